// Server-Sent Events over fetch, counting bytes.
//
// EventSource cannot POST and cannot tell how many bytes it has read, so the page reads
// the stream with fetch and splits it into events itself. It counts the bytes of every
// COMPLETE event: that count is the logical offset to resume from (`?from=N`), and it is
// also the event's `id:` when the server stamps ids. Bytes of an event cut in the middle
// by a lost connection are dropped and read again on resume: no gap, no duplicate.

const CR = 13;
const LF = 10;

/** Splits a byte stream into whole events; feed it chunks, get [eventBytes, endOffset]. */
export class EventSplitter {
  constructor(offset) {
    this.offset = offset; // logical offset of the first byte in `buffer`
    this.buffer = new Uint8Array(0);
    this.scan = 0; // where to look for the next line ending
    this.lineStart = 0;
  }

  /**
   * Add bytes; return the whole events they complete, with the offset after each.
   * `final` (the stream ended): a last event ended by a lone CR is complete after all.
   */
  push(chunk, final = false) {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    this.buffer = joined;
    const events = [];
    let eventStart = 0;
    let i = this.scan;
    while (i < this.buffer.length) {
      const byte = this.buffer[i];
      if (byte !== CR && byte !== LF) {
        i += 1;
        continue;
      }
      let end = i + 1;
      if (byte === CR) {
        if (i + 1 >= this.buffer.length && !final) break; // CR or CRLF? the next byte says
        if (this.buffer[i + 1] === LF) end = i + 2;
      }
      const blank = i === this.lineStart;
      i = end;
      this.lineStart = end;
      if (blank) {
        events.push([this.buffer.slice(eventStart, end), this.offset + end]);
        eventStart = end;
      }
    }
    this.buffer = this.buffer.slice(eventStart);
    this.offset += eventStart;
    this.scan = i - eventStart;
    this.lineStart -= eventStart;
    return events;
  }
}

const decoder = new TextDecoder();

/**
 * The fields of one whole event: {data: string|null, id: string|null, end: string|null};
 * comments skipped. `end` is the reason of the end event the server tells a reader after
 * the stream's bytes (": end stopped"): not part of the stream, it moves no offset.
 */
export function parseEvent(bytes) {
  const lines = decoder.decode(bytes).split(/\r\n|\r|\n/);
  const data = [];
  let id = null;
  let end = null;
  for (const line of lines) {
    if (line.startsWith(": end ")) end = line.slice(6).trim();
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") data.push(value);
    else if (name === "id") id = value;
  }
  return { data: data.length ? data.join("\n") : null, id, end };
}

/**
 * Read a fetch Response body, calling onEvent(event, endOffset) for each whole event.
 * Resolves when the server ends the stream; rejects on a network error or abort.
 */
export async function readEvents(response, offset, onEvent) {
  const splitter = new EventSplitter(offset);
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    for (const [bytes, end] of splitter.push(value || new Uint8Array(0), done)) {
      onEvent(parseEvent(bytes), end);
    }
    if (done) return;
  }
}
