// The trio-streams HTTP API, as the page uses it. Relative URLs: the page is served by
// the same app, so it works wherever the server is. A copy of the page served from another
// origin names the server in <meta name="trio-streams-api" content="https://host/">
// (the server then needs --cors-origin for that origin). Never taken from the page's URL:
// a link could otherwise send the saved key to any server.
const API_BASE = new URL(
  document.querySelector('meta[name="trio-streams-api"]')?.content || ".",
  document.baseURI,
);
const api = (path) => new URL(path, API_BASE).href;

// A server started with --api-key needs one on every call. Open the page once as
// /#key=<key>: the key is kept in this browser's localStorage and removed from the URL.
const KEY_STORAGE = "trio-streams-api-key";
const fragmentKey = new URLSearchParams(location.hash.slice(1)).get("key");
if (fragmentKey) {
  localStorage.setItem(KEY_STORAGE, fragmentKey);
  history.replaceState(null, "", location.pathname + location.search);
}

function withKey(headers = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

export async function models() {
  const response = await fetch(api("v1/models"), { headers: withKey() });
  if (!response.ok) throw new Error(`models: HTTP ${response.status}`);
  return (await response.json()).data.map((model) => model.id);
}

/** Start (or replace) the conversation's stream; the response body is the stream. */
export function startChat(conversationId, model, prompt, signal) {
  return fetch(api("v1/chat/completions"), {
    method: "POST",
    headers: withKey({ "Content-Type": "application/json", "X-Conversation-Id": conversationId }),
    body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: prompt }] }),
    signal,
  });
}

/** The session's state, or null if the server has no such stream (stopped or expired). */
export async function lookup(conversationId) {
  const response = await fetch(api("v1/streams/lookup"), {
    method: "POST",
    headers: withKey({ "Content-Type": "application/json" }),
    body: JSON.stringify({ conversation_ids: [conversationId] }),
  });
  if (!response.ok) throw new Error(`lookup: HTTP ${response.status}`);
  const found = await response.json();
  return found.find((info) => info.conversation_id === conversationId) || null;
}

/**
 * The stream's bytes from `offset` on, following it until it ends. With `generation` (the
 * X-Stream-Generation of the response that started it) the resume is pinned: if the
 * conversation was replaced meanwhile the server answers 409, never the new answer's bytes.
 */
export function resume(conversationId, offset, generation, signal) {
  const pin = generation ? `&generation=${encodeURIComponent(generation)}` : "";
  const query = `conv_id=${encodeURIComponent(conversationId)}${pin}&from=${offset}`;
  return fetch(api(`v1/stream?${query}`), { headers: withKey(), signal });
}

/** The generation a stream response reads (null from a server without generations). */
export function generationOf(response) {
  return response.headers.get("X-Stream-Generation");
}

/**
 * Stop a conversation's stream. With `generation` (the answer the page shows), only if
 * that is still the current one: a newer answer started from another tab is left alone.
 */
export function stop(conversationId, generation) {
  const pin = generation ? `&generation=${encodeURIComponent(generation)}` : "";
  return fetch(api(`v1/stream?conv_id=${encodeURIComponent(conversationId)}${pin}`), {
    method: "DELETE",
    headers: withKey(),
  });
}

/** The JSON error of a failed response: {message, reason} (reason: why a stream ended). */
export async function errorOf(response) {
  try {
    const { message, reason } = (await response.json()).error;
    return { message, reason: reason || null };
  } catch {
    return { message: `HTTP ${response.status}`, reason: null };
  }
}

/** The JSON error message of a failed response, or its status. */
export async function errorMessage(response) {
  return (await errorOf(response)).message;
}
