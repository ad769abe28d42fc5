// The trio-streams HTTP API, as the page uses it. Relative URLs: the page is served by
// the same app, so it works wherever the server is.

export async function models() {
  const response = await fetch("v1/models");
  if (!response.ok) throw new Error(`models: HTTP ${response.status}`);
  return (await response.json()).data.map((model) => model.id);
}

/** Start (or replace) the conversation's stream; the response body is the stream. */
export function startChat(conversationId, model, prompt, signal) {
  return fetch("v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Conversation-Id": conversationId },
    body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: prompt }] }),
    signal,
  });
}

/** The session's state, or null if the server has no such stream (stopped or expired). */
export async function lookup(conversationId) {
  const response = await fetch("v1/streams/lookup", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ conversation_ids: [conversationId] }),
  });
  if (!response.ok) throw new Error(`lookup: HTTP ${response.status}`);
  const found = await response.json();
  return found.find((info) => info.conversation_id === conversationId) || null;
}

/** The stream's bytes from `offset` on, following it until it ends. */
export function resume(conversationId, offset, signal) {
  return fetch(`v1/stream?conv_id=${encodeURIComponent(conversationId)}&from=${offset}`, {
    signal,
  });
}

export function stop(conversationId) {
  return fetch(`v1/stream?conv_id=${encodeURIComponent(conversationId)}`, { method: "DELETE" });
}

/** The JSON error message of a failed response, or its status. */
export async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `HTTP ${response.status}`;
  }
}
