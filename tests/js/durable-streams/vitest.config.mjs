// testTimeout: the suite's tests without a timeout of their own get 30 s, not vitest's 5 s.
// Its chunk-size pagination test checks 102,400 bytes with one expect() each, 2 s of Node's
// CPU on an idle 2-core machine and 5-9 s on a loaded one: a timeout, not a failure.
export default { test: { include: ["conformance.test.mjs"], testTimeout: 30000 } }
