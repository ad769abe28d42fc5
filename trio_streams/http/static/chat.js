// The chat page: stream an answer, survive reloads and network loss, stop the model.
//
// Everything needed to carry on is in localStorage after every whole event: the
// conversation id, the byte offset after that event, and the text so far. A reload (or a
// lost connection) asks POST /v1/streams/lookup whether the stream still exists, then
// reads GET /v1/stream?conv_id=C&from=<offset>: the server kept generating meanwhile, and
// the bytes from that offset are exactly the ones the page has not seen.

import * as api from "./api.js";
import { readEvents } from "./sse.js";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("ask"),
  prompt: $("prompt"),
  model: $("model"),
  send: $("send"),
  stop: $("stop"),
  clear: $("clear"),
  question: $("question"),
  answer: $("answer"),
  status: $("status"),
  offset: $("offset"),
};

// A connection that brings nothing for this long is taken for dead, dropped and resumed.
// The server sends a keep-alive comment after 5 s of silence (by default), so a healthy
// stream never stays silent this long. `?stall_ms=N` in the page URL changes it.
const STALL_MS = Number(new URLSearchParams(location.search).get("stall_ms")) || 30000;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5000;
const ACTIVE = new Set(["starting", "streaming", "resuming", "reconnecting"]);

let state = null; // see store.load()
let run = 0; // bumped by Send, Stop and Clear: a loop of an older run stops itself
let reading = null; // AbortController of the response being read
let wake = null; // resolves the current backoff sleep early (the browser came back online)

function setStatus(name, message) {
  ui.status.dataset.state = name;
  ui.status.textContent = message;
  document.body.dataset.state = name;
  ui.stop.disabled = !ACTIVE.has(name);
  ui.offset.textContent = state ? `${state.offset} bytes received` : "";
}

function render() {
  ui.question.textContent = state ? state.prompt : "";
  ui.answer.textContent = state ? state.text : "";
  ui.offset.textContent = state ? `${state.offset} bytes received` : "";
}

function finish(outcome, message) {
  state.finished = true;
  state.outcome = outcome;
  state.message = message;
  store.save(state);
  setStatus(outcome, message);
}

/** Apply one whole event that ends at byte `end` of the stream. */
function apply(event, end) {
  state.offset = end;
  if (event.data === "[DONE]") {
    state.finished = true;
    state.outcome = "done";
    state.message = "Done";
  } else if (event.data !== null) {
    let chunk = null;
    try {
      chunk = JSON.parse(event.data);
    } catch {
      // Not JSON: not an OpenAI chunk, nothing to show.
    }
    if (chunk && chunk.error) {
      state.finished = true;
      state.outcome = "error";
      state.message = `Error: ${chunk.error.message}`;
    }
    for (const choice of (chunk && chunk.choices) || []) {
      state.text += (choice.delta && choice.delta.content) || choice.text || "";
    }
  }
  store.save(state);
  render();
}

/** Abort `controller` unless kick() is called at least every STALL_MS. */
function watchdog(controller) {
  let timer = null;
  const kick = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(), STALL_MS);
  };
  kick();
  return { kick, cancel: () => clearTimeout(timer) };
}

function sleep(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
}

// Going offline usually leaves the open connection dead or stalled without an error for a
// long time (a phone switching networks, Wi-Fi lost): drop it at once and resume from the
// saved offset as soon as the browser is back online.
window.addEventListener("offline", () => reading && reading.abort());
window.addEventListener("online", () => wake && wake());

/**
 * Follow the conversation's stream until it is finished, stopped or gone, resuming from
 * the saved offset after every interruption, with exponential backoff between tries.
 */
async function follow(myRun, firstResponse) {
  let response = firstResponse;
  let attempt = 0;
  while (myRun === run && !state.finished) {
    const resumedAt = state.offset;
    try {
      if (response === null) {
        // (The first response's reader was made by ask(), with its own controller.)
        reading = new AbortController();
        setStatus(
          attempt === 0 ? "resuming" : "reconnecting",
          `Resuming from byte ${state.offset}…`,
        );
        const info = await api.lookup(state.conversationId);
        if (myRun !== run) return;
        if (info === null) {
          finish("ended", state.offset === 0
            ? "The stream never started on the server: send again."
            : "The server no longer has this stream (stopped or expired).");
          return;
        }
        response = await api.resume(state.conversationId, state.offset, reading.signal);
      }
      if (response.status === 429 || response.status >= 500) {
        throw new Error(`HTTP ${response.status}`); // overload or shutdown: retry
      }
      if (!response.ok) {
        finish("error", `Error: ${await api.errorMessage(response)}`);
        return;
      }
      let first = true;
      const stall = watchdog(reading);
      await readEvents(response, state.offset, (event, end) => {
        stall.kick();
        if (myRun !== run) return;
        if (first) {
          first = false;
          attempt = 0;
          setStatus("streaming", resumedAt > 0 ? `Streaming (resumed at byte ${resumedAt})` : "Streaming");
        }
        apply(event, end);
      }).finally(stall.cancel);
      response = null;
      if (myRun !== run) return;
      if (!state.finished) {
        // The server ended the response without [DONE]: stopped elsewhere, or it ended.
        const info = await api.lookup(state.conversationId);
        if (info === null || (info.is_done && info.total_bytes <= state.offset)) {
          finish("ended", "The stream ended before its answer was complete.");
          return;
        }
      }
    } catch (error) {
      response = null;
      if (myRun !== run) return; // Stop, Clear or a new question aborted this read
      attempt += 1;
      const delay = Math.min(RETRY_FIRST_MS * 2 ** (attempt - 1), RETRY_MAX_MS);
      const why = navigator.onLine ? "Connection lost" : "Offline";
      setStatus(
        "reconnecting",
        `${why} at byte ${state.offset}: retrying in ${(delay / 1000).toFixed(1)} s (attempt ${attempt})`,
      );
      await sleep(delay);
    }
  }
  if (myRun === run && state.finished) setStatus(state.outcome, state.message);
}

async function ask(prompt) {
  const previous = state;
  run += 1;
  const myRun = run;
  if (reading) reading.abort();
  if (previous && !previous.finished) api.stop(previous.conversationId).catch(() => {});
  state = {
    conversationId: store.newConversationId(),
    prompt,
    model: ui.model.value,
    offset: 0,
    text: "",
    finished: false,
    outcome: "",
    message: "",
  };
  store.save(state);
  render();
  setStatus("starting", "Waiting for the first token…");
  reading = new AbortController();
  let response = null;
  try {
    response = await api.startChat(state.conversationId, state.model, prompt, reading.signal);
  } catch {
    // Did the request reach the server? follow() asks lookup and resumes if it did.
  }
  if (myRun === run) await follow(myRun, response);
}

/** Stop: DELETE cancels the producer on the server; "Stopped" shows once it answered. */
async function stop() {
  if (!state || state.finished) return;
  run += 1;
  if (reading) reading.abort();
  state.finished = true; // a reload now must not resume it, but must finish stopping it
  state.outcome = "stopping";
  store.save(state);
  await sendStop(state);
}

async function sendStop(stopping) {
  setStatus("stopping", "Stopping…");
  for (let attempt = 0; attempt < 6; attempt += 1) {
    try {
      const response = await api.stop(stopping.conversationId);
      if (response.ok && state === stopping) finish("stopped", "Stopped: the model stopped generating.");
      return;
    } catch {
      await sleep(RETRY_FIRST_MS * 2 ** attempt);
    }
  }
  if (state === stopping) finish("error", "Stop could not reach the server.");
}

function clear() {
  if (state && !state.finished) stop();
  run += 1;
  state = null;
  store.clear();
  render();
  setStatus("idle", "Ask something.");
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = ui.prompt.value.trim();
  if (!prompt) return;
  ui.prompt.value = "";
  ask(prompt);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
ui.stop.addEventListener("click", stop);
ui.clear.addEventListener("click", clear);

async function main() {
  try {
    for (const id of await api.models()) ui.model.add(new Option(id, id));
  } catch {
    ui.model.add(new Option("demo", "demo"));
  }
  state = store.load();
  render();
  if (state === null) {
    setStatus("idle", "Ask something.");
  } else if (state.outcome === "stopping") {
    sendStop(state); // the tab was reloaded while its Stop was on the way
  } else if (state.finished) {
    setStatus(state.outcome, state.message);
  } else {
    run += 1;
    follow(run, null);
  }
}

main();
