// What survives a reload: the conversation id, the offset of the last whole event
// received, and the text it made. Kept in localStorage under one key.

const KEY = "trio-streams-chat";

/** @returns {{conversationId: string, prompt: string, model: string, offset: number,
 *             text: string, finished: boolean, outcome: string} | null} */
export function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || "null");
    if (saved && typeof saved.conversationId === "string" && Number.isInteger(saved.offset)) {
      return saved;
    }
  } catch {
    // A corrupt entry is treated as no conversation.
  }
  return null;
}

export function save(state) {
  localStorage.setItem(KEY, JSON.stringify(state));
}

export function clear() {
  localStorage.removeItem(KEY);
}

/** A fresh conversation id: 128 random bits, hex (ids are secrets: whoever knows one can read it). */
export function newConversationId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "chat-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
