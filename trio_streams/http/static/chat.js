// The chat page: stream answers, survive reloads and network loss, stop the model, keep
// several conversations.
//
// Everything needed to carry on is in localStorage after every whole event: the open
// conversation's id, its generation (X-Stream-Generation), the byte offset after that
// event, and the text so far (store.js keeps every conversation and which one is open). A
// reload, a lost connection or switching back to a conversation reads
// GET /v1/stream?conv_id=C&generation=G&from=<offset>: the server kept generating
// meanwhile, and the bytes from that offset are exactly the ones the page has not seen;
// if the stream was replaced, stopped or evicted meanwhile, the answer (409, or 404 with a
// reason) says so, as does the end event of a stream that ends while the page reads it.
// Leaving a conversation mid-answer does not stop it; only Stop (or deleting it) does.

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
  newChat: $("new-chat"),
  history: $("history"),
  chatList: $("chat-list"),
  chatCount: $("chat-count"),
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
// Within this many pixels of the end, the reader is "at the bottom" and the page follows.
const FOLLOW_SLACK_PX = 48;
const WIDE = matchMedia("(min-width: 64rem)");

let state = null; // the open conversation (see store.js), null for a new, empty chat
let run = 0; // bumped whenever the open conversation changes: an older loop stops itself
let reading = null; // AbortController of the response being read
let wake = null; // resolves the current backoff sleep early (the browser came back online)

function setStatus(name, message) {
  ui.status.dataset.state = name;
  ui.status.textContent = message;
  document.body.dataset.state = name;
  ui.stop.disabled = !ACTIVE.has(name);
  ui.offset.textContent = state ? `${state.offset} bytes received` : "";
}

/** Whether the reader is at the end of the page (then new text keeps it there). */
function atBottom() {
  const page = document.scrollingElement;
  return page.scrollTop + page.clientHeight >= page.scrollHeight - FOLLOW_SLACK_PX;
}

/** To the very end: the form sits after the answer there, below its last line. */
function toBottom() {
  const page = document.scrollingElement;
  page.scrollTop = page.scrollHeight;
}

function render({ follow = atBottom() } = {}) {
  ui.question.textContent = state ? state.prompt : "";
  ui.answer.textContent = state ? state.text : "";
  ui.offset.textContent = state ? `${state.offset} bytes received` : "";
  if (follow) toBottom();
}

const OUTCOME_LABELS = {
  done: "done",
  length: "cut",
  stopped: "stopped",
  stopping: "stopping",
  replaced: "replaced",
  ended: "ended",
  error: "error",
};

function renderList() {
  const conversations = store.list();
  ui.chatCount.textContent = String(conversations.length);
  ui.chatList.replaceChildren(
    ...conversations.map((conversation) => {
      const item = document.createElement("li");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "chat-open";
      open.dataset.id = conversation.conversationId;
      open.setAttribute(
        "aria-current",
        String(state !== null && state.conversationId === conversation.conversationId),
      );
      const title = document.createElement("span");
      title.className = "chat-title";
      title.textContent = conversation.prompt;
      const badge = document.createElement("span");
      badge.className = "chat-state";
      badge.textContent = conversation.finished
        ? OUTCOME_LABELS[conversation.outcome] || conversation.outcome
        : "unfinished";
      open.append(title, badge);
      open.addEventListener("click", () => select(conversation.conversationId));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chat-delete";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Delete “${conversation.prompt}”`);
      remove.addEventListener("click", () => removeConversation(conversation.conversationId));
      item.append(open, remove);
      return item;
    }),
  );
}

/** The outcome of a stream that ended with [DONE], from its last finish_reason. */
function completed(conversation) {
  conversation.finished = true;
  if (conversation.finishReason === "length") {
    conversation.outcome = "length";
    conversation.message = "Cut at the token limit (finish_reason: length): the answer is incomplete.";
  } else if (conversation.finishReason && conversation.finishReason !== "stop") {
    conversation.outcome = "done";
    conversation.message = `Done (finish_reason: ${conversation.finishReason})`;
  } else {
    conversation.outcome = "done";
    conversation.message = "Done";
  }
}

function finish(conversation, outcome, message) {
  conversation.finished = true;
  conversation.outcome = outcome;
  conversation.message = message;
  store.save(conversation);
  if (conversation === state) setStatus(outcome, message);
  renderList();
}

/** What the page says for a stream that ended for `reason` (end event or 404/409). */
const ENDINGS = {
  stopped: ["stopped", "Stopped from another tab."],
  replaced: ["replaced", "Replaced: a newer request for this conversation took its place."],
  evicted: ["ended", "The server dropped this stream to make room for newer ones."],
  expired: ["ended", "The server no longer has this stream (expired)."],
};

/** Apply one whole event that ends at byte `end` of the stream. */
function apply(event, end) {
  const follow = atBottom();
  if (event.end !== null) {
    // The end event: not part of the stream (no offset). "shutdown": resume elsewhere.
    const ending = ENDINGS[event.end];
    if (ending) finish(state, ...ending);
    return;
  }
  state.offset = end;
  if (event.data === "[DONE]") {
    completed(state);
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
      if (choice.finish_reason) state.finishReason = choice.finish_reason;
    }
  }
  store.save(state);
  render({ follow });
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
 * Follow the open conversation's stream until it is finished, stopped or gone, resuming
 * from the saved offset after every interruption, with exponential backoff between tries.
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
        // Pinned to the generation it started with: a regenerate meanwhile is a 409.
        response = await api.resume(
          state.conversationId, state.offset, state.generation, reading.signal,
        );
      }
      if (response.status === 429 || response.status >= 500) {
        throw new Error(`HTTP ${response.status}`); // overload or shutdown: retry
      }
      if (!response.ok) {
        const error = await api.errorOf(response);
        if (myRun !== run) return;
        const ending = ENDINGS[error.reason];
        if (ending) {
          finish(state, ...ending); // stopped or evicted (404), replaced (409)
        } else if (response.status === 404) {
          finish(state, "ended", state.offset === 0
            ? "The stream never started on the server: send again."
            : "The server no longer has this stream (expired).");
        } else {
          finish(state, "error", `Error: ${error.message}`);
        }
        return;
      }
      if (!state.generation && api.generationOf(response)) {
        state.generation = api.generationOf(response);
        store.save(state);
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
        // The server ended the response without [DONE] or an end reason: it went away
        // (shutdown: resume), or the answer ended without one.
        const info = await api.lookup(state.conversationId);
        if (myRun !== run) return;
        if (info !== null && state.generation && info.generation !== state.generation) {
          finish(state, ...ENDINGS.replaced);
          return;
        }
        if (info === null || (info.is_done && info.total_bytes <= state.offset)) {
          finish(state, "ended", "The stream ended before its answer was complete.");
          return;
        }
      }
    } catch (error) {
      response = null;
      if (myRun !== run) return; // another conversation, Stop or New chat aborted this read
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
  if (myRun === run && state.finished) {
    setStatus(state.outcome, state.message);
    renderList();
  }
}

/** Leave the open conversation (its stream goes on on the server) for `next`. */
function open(next) {
  run += 1;
  if (reading) reading.abort();
  state = next;
  store.setCurrent(next ? next.conversationId : null);
  render({ follow: true });
  renderList();
  return run;
}

function showSaved() {
  if (state === null) {
    setStatus("idle", "Ask something: then reload mid-answer, it resumes.");
  } else if (state.outcome === "stopping") {
    sendStop(state); // a Stop was on its way when the tab was reloaded or left
  } else if (state.finished) {
    setStatus(state.outcome, state.message);
  } else {
    follow(run, null);
  }
}

async function ask(prompt) {
  const conversation = {
    conversationId: store.newConversationId(),
    prompt,
    model: ui.model.value,
    offset: 0,
    generation: null,
    text: "",
    finished: false,
    outcome: "",
    message: "",
    finishReason: null,
    created: Date.now(),
  };
  store.create(conversation);
  const myRun = open(conversation);
  setStatus("starting", "Waiting for the first token…");
  reading = new AbortController();
  let response = null;
  try {
    response = await api.startChat(state.conversationId, state.model, prompt, reading.signal);
  } catch {
    // Did the request reach the server? follow() resumes (unpinned) and learns if it did.
  }
  if (myRun === run) await follow(myRun, response);
}

function select(conversationId) {
  if (state && state.conversationId === conversationId) return;
  const next = store.load(conversationId);
  if (next === null) return renderList();
  open(next);
  showSaved();
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
  if (stopping === state) setStatus("stopping", "Stopping…");
  renderList();
  for (let attempt = 0; attempt < 6; attempt += 1) {
    try {
      const response = await api.stop(stopping.conversationId, stopping.generation);
      if (response.ok) finish(stopping, "stopped", "Stopped: the model stopped generating.");
      return;
    } catch {
      await sleep(RETRY_FIRST_MS * 2 ** attempt);
    }
  }
  finish(stopping, "error", "Stop could not reach the server.");
}

/** Forget a conversation; one still generating is stopped on the server first. */
function removeConversation(conversationId) {
  const conversation = store.load(conversationId);
  if (conversation && (!conversation.finished || conversation.outcome === "stopping")) {
    // The TTL ends it if this DELETE is lost.
    api.stop(conversationId, conversation.generation).catch(() => {});
  }
  store.remove(conversationId);
  if (state && state.conversationId === conversationId) {
    open(null);
    showSaved();
  } else {
    renderList();
  }
}

function newChat() {
  open(null);
  showSaved();
  ui.prompt.focus();
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
ui.newChat.addEventListener("click", newChat);
// A wide screen has room for the list beside the chat; a phone opens it on demand.
ui.history.open = WIDE.matches;
WIDE.addEventListener("change", () => (ui.history.open = WIDE.matches));

async function main() {
  try {
    for (const id of await api.models()) ui.model.add(new Option(id, id));
  } catch {
    ui.model.add(new Option("demo", "demo"));
  }
  state = store.current();
  run += 1;
  render({ follow: true });
  renderList();
  showSaved();
}

main();
