// What survives a reload: every conversation the user keeps, each with its id, the
// offset of the last whole event received and the text it made, plus which one is open.
//
// One localStorage entry per conversation (`trio-streams-chat:<id>`), rewritten after
// every event of the open one, so a long list costs nothing per token; an index entry
// (`trio-streams-chats`) holds the order, newest first, and the open conversation.

const INDEX = "trio-streams-chats";
const PREFIX = "trio-streams-chat:";
// The single conversation an older version of the page kept: adopted on first load.
const LEGACY = "trio-streams-chat";
// The server forgets finished streams after their TTL anyway; the page keeps the text.
export const MAX_CONVERSATIONS = 50;

/**
 * @typedef {{conversationId: string, prompt: string, model: string, offset: number,
 *            generation: string|null, text: string, finished: boolean, outcome: string,
 *            message: string, finishReason: string|null, created: number}} Conversation
 */

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null; // a corrupt entry is treated as missing
  }
}

function valid(saved) {
  return Boolean(saved) && typeof saved.conversationId === "string" && Number.isInteger(saved.offset);
}

function readIndex() {
  const index = readJson(INDEX);
  if (index && Array.isArray(index.ids)) {
    return { ids: index.ids.filter((id) => typeof id === "string"), current: index.current || null };
  }
  const legacy = readJson(LEGACY);
  localStorage.removeItem(LEGACY);
  if (!valid(legacy)) return { ids: [], current: null };
  localStorage.setItem(PREFIX + legacy.conversationId, JSON.stringify(legacy));
  const adopted = { ids: [legacy.conversationId], current: legacy.conversationId };
  localStorage.setItem(INDEX, JSON.stringify(adopted));
  return adopted;
}

function writeIndex(index) {
  localStorage.setItem(INDEX, JSON.stringify(index));
}

/** @returns {Conversation|null} */
export function load(conversationId) {
  const saved = readJson(PREFIX + conversationId);
  return valid(saved) ? saved : null;
}

/** Every kept conversation, newest first (entries that went missing are skipped). */
export function list() {
  return readIndex().ids.map(load).filter(Boolean);
}

/** The conversation that was open, or null (a new, empty chat). */
export function current() {
  const { current: id } = readIndex();
  return id ? load(id) : null;
}

export function setCurrent(conversationId) {
  writeIndex({ ...readIndex(), current: conversationId });
}

/** Keep a new conversation, first in the list (the oldest beyond the cap are dropped). */
export function create(conversation) {
  localStorage.setItem(PREFIX + conversation.conversationId, JSON.stringify(conversation));
  const index = readIndex();
  index.ids = [conversation.conversationId, ...index.ids.filter((id) => id !== conversation.conversationId)];
  for (const dropped of index.ids.splice(MAX_CONVERSATIONS)) {
    localStorage.removeItem(PREFIX + dropped);
  }
  index.current = conversation.conversationId;
  writeIndex(index);
}

/** Save a kept conversation; one deleted meanwhile (a late event, a Stop) stays deleted. */
export function save(conversation) {
  if (readIndex().ids.includes(conversation.conversationId)) {
    localStorage.setItem(PREFIX + conversation.conversationId, JSON.stringify(conversation));
  }
}

export function remove(conversationId) {
  localStorage.removeItem(PREFIX + conversationId);
  const index = readIndex();
  writeIndex({
    ids: index.ids.filter((id) => id !== conversationId),
    current: index.current === conversationId ? null : index.current,
  });
}

/** A fresh conversation id: 128 random bits, hex (ids are secrets: whoever knows one can read it). */
export function newConversationId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "chat-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
