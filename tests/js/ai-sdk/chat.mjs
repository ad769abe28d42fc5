// Drives trio-streams' /api/chat with the AI SDK's own chat (the `ai` package's AbstractChat,
// the class `useChat` wraps) and its default transport: no hand-written protocol code.
//
//   node chat.mjs <base-url> <chat-id> <scenario>
//
// Scenarios (each prints one JSON line for the Python test to check):
//   resume  send a message, abort mid-answer (the SDK's stop(): a disconnect), then resume
//           through the SDK's reconnect call (resumeStream -> GET /api/chat/{id}/stream)
//   stop    send a message, call the stop endpoint mid-answer, then try to resume
//   replay  resume a chat whose answer has already finished (a reload after the end)
import { AbstractChat, DefaultChatTransport } from "ai";

const [baseUrl, chatId, scenario] = process.argv.slice(2);

class PlainState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [
      ...this.messages.slice(0, index),
      this.snapshot(message),
      ...this.messages.slice(index + 1),
    ];
  };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new PlainState(init.messages) });
  }
}

function newChat(messages = []) {
  const transport = new DefaultChatTransport({
    api: `${baseUrl}/api/chat`,
    body: { max_tokens: 120 },
  });
  return new Chat({ id: chatId, transport, messages });
}

function assistantText(chat) {
  const last = chat.messages.at(-1);
  if (!last || last.role !== "assistant") return "";
  return last.parts
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}

async function untilSomeText(chat, minimum) {
  for (let i = 0; i < 2000; i++) {
    if (assistantText(chat).length >= minimum) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`no ${minimum} characters of answer after 10 s: ${chat.status} ${chat.error?.stack}`);
}

function summary(chat) {
  return chat.messages.map((message) => ({
    id: message.id,
    role: message.role,
    text: message.parts
      .filter((part) => part.type === "text")
      .map((part) => part.text)
      .join(""),
  }));
}

const userMessage = { text: "tell me about resumable streams" };

if (scenario === "resume") {
  const chat = newChat();
  const sending = chat.sendMessage(userMessage);
  await untilSomeText(chat, 20);
  await chat.stop();
  await sending;
  const partial = assistantText(chat);
  await chat.resumeStream();
  console.log(
    JSON.stringify({ partial, status: chat.status, error: chat.error?.message, messages: summary(chat) }),
  );
} else if (scenario === "stop") {
  const chat = newChat();
  const sending = chat.sendMessage(userMessage);
  await untilSomeText(chat, 20);
  const stopped = await fetch(`${baseUrl}/api/chat/${encodeURIComponent(chatId)}/stop`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ assistantMessage: chat.messages.at(-1) }),
  });
  await chat.stop();
  await sending;
  const partial = assistantText(chat);
  const before = chat.messages.length;
  await chat.resumeStream();
  console.log(
    JSON.stringify({
      stopStatus: stopped.status,
      stopBody: await stopped.json(),
      partial,
      messagesBefore: before,
      status: chat.status,
      messages: summary(chat),
    }),
  );
} else if (scenario === "replay") {
  // A fresh page: the chat's history is only the user's message, as an app that saved
  // nothing of the answer would have it. resume: true makes useChat call resumeStream().
  const chat = newChat([
    { id: "user-1", role: "user", parts: [{ type: "text", text: userMessage.text }] },
  ]);
  await chat.resumeStream();
  console.log(JSON.stringify({ status: chat.status, error: chat.error?.message, messages: summary(chat) }));
} else {
  console.error(`unknown scenario ${scenario}`);
  process.exit(2);
}
