// The suite, exactly as its npm package ships it, against CONFORMANCE_TEST_URL
// (http://host:port/ds). Its own CLI runs the same function; this file exists so vitest
// can take a JSON reporter and a name filter.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_TEST_URL
if (!baseUrl) throw new Error("CONFORMANCE_TEST_URL is required")
runConformanceTests({ baseUrl })
