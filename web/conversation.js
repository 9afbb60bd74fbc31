// The conversation as the page shows it, built from server messages.
//
// Pure state, no DOM: `apply(msg)` folds one server message in and returns the
// ids of the items it changed, so the page re-renders only those (and Node
// tests can check the folding without a browser).
//
// Item ids are unique on the page, not only per connection: the server's ids
// (`resp_1`, `item_1`) restart with every connection, so each is prefixed with
// the connection's number (`c2:resp_1`). Items of earlier connections stay (the
// page keeps showing them above the "Reconnected" line) until `clear()`.

import { OUTPUT_RATE, responseIdOfItem } from "./protocol.js";

/**
 * @typedef {{kind: "user", id: string, text: string, partial: boolean, source: "voice"|"typed",
 *            connection: number}} UserItem
 * @typedef {{kind: "assistant", id: string, serverId: string, text: string, spoken: string,
 *            segments: {offset: number, text: string}[], status: string, reason: string|null,
 *            heardText: string|null, metrics: object|null, audioSamples: number,
 *            connection: number}} AssistantItem
 */

/** The reason a reply ends with when the connection drops under it (as the server says it). */
const LOST_CONNECTION = "disconnected";

export class Conversation {
  constructor() {
    /** @type {(UserItem|AssistantItem)[]} */
    this.items = [];
    /** @type {Map<string, UserItem|AssistantItem>} */
    this.byId = new Map();
    this.typedCount = 0;
    /** Number of the connection (server session) whose messages `apply` folds in. */
    this.connection = 0;
  }

  /** Forget every item (the page's Clear). Ids stay unique: the counters go on. */
  clear() {
    this.items = [];
    this.byId.clear();
  }

  /** A new connection starts: its server ids restart, so they get a new prefix. */
  newConnection() {
    this.connection += 1;
  }

  /** The page-wide id of a server id of the current connection. */
  key(serverId) {
    return `c${this.connection}:${serverId}`;
  }

  /** @returns {UserItem} */
  user(serverId) {
    const id = this.key(serverId);
    let item = this.byId.get(id);
    if (!item) {
      item = { kind: "user", id, text: "", partial: true, source: "voice", connection: this.connection };
      this.add(item);
    }
    return item;
  }

  /** @returns {AssistantItem} */
  assistant(serverId) {
    const id = this.key(serverId);
    let item = this.byId.get(id);
    if (!item) {
      item = {
        kind: "assistant",
        id,
        serverId,
        connection: this.connection,
        text: "",
        spoken: "",
        segments: [],
        status: "in_progress",
        reason: null,
        heardText: null,
        metrics: null,
        audioSamples: 0,
      };
      this.add(item);
    }
    return item;
  }

  add(item) {
    this.items.push(item);
    this.byId.set(item.id, item);
  }

  /**
   * A message the person typed (sent as `response.create` with `input_text`).
   * @param {string} text
   * @returns {string} the new item's id
   */
  addTyped(text) {
    this.typedCount += 1;
    const id = `typed_${this.typedCount}`;
    this.add({ kind: "user", id, text, partial: false, source: "typed", connection: this.connection });
    return id;
  }

  /**
   * The connection was lost: nothing in flight will ever finish. A streaming reply
   * ends as cut off; a user item still being transcribed keeps what was heard of it
   * (or goes, if nothing was).
   * @returns {string[]} ids of changed (or removed) items
   */
  disconnected() {
    const changed = [];
    for (const it of [...this.items]) {
      if (it.kind === "assistant" && it.status === "in_progress") {
        it.status = "cancelled";
        it.reason = LOST_CONNECTION;
        it.heardText = null;
        changed.push(it.id);
      } else if (it.kind === "user" && it.partial) {
        it.partial = false;
        if (!it.text.trim()) this.remove(it.id);
        changed.push(it.id);
      }
    }
    return changed;
  }

  /** The whole conversation as plain data, for the page's Export. */
  exportData() {
    return this.items.map((it) =>
      it.kind === "user"
        ? { role: "user", source: it.source, text: it.text, connection: it.connection }
        : {
            role: "assistant",
            text: it.text,
            status: it.status,
            reason: it.reason,
            heard_text: it.heardText,
            metrics: it.metrics,
            connection: it.connection,
          },
    );
  }

  /** Remove an item (a voice turn whose transcript came back empty). */
  remove(id) {
    this.byId.delete(id);
    this.items = this.items.filter((it) => it.id !== id);
  }

  /**
   * Fold one server message in.
   * @param {any} msg a decoded server JSON message
   * @returns {string[]} ids of changed items (removed ones included)
   */
  apply(msg) {
    switch (msg.type) {
      case "input_audio_buffer.speech_started":
      case "input_audio_buffer.committed":
        return [this.user(msg.item_id).id];
      case "conversation.item.input_audio_transcription.delta": {
        const it = this.user(msg.item_id);
        // Each partial replaces the previous one (PROTOCOL.md), it is not appended.
        if (it.partial) it.text = msg.delta;
        return [it.id];
      }
      case "conversation.item.input_audio_transcription.completed": {
        const it = this.user(msg.item_id);
        it.text = msg.transcript;
        it.partial = false;
        if (!msg.transcript.trim()) this.remove(it.id);
        return [it.id];
      }
      case "bitvoice.backchannel": {
        // "mm-hmm" said over the reply: kept (the server keeps it in its history too), not
        // answered; nothing readable was said: no bubble
        const it = this.user(msg.item_id);
        it.text = msg.transcript;
        it.partial = false;
        it.backchannel = true;
        if (!msg.transcript.trim()) this.remove(it.id);
        return [it.id];
      }
      case "response.created": {
        const it = this.assistant(msg.response.id);
        it.status = msg.response.status || "in_progress";
        return [it.id];
      }
      case "response.output_text.delta": {
        const it = this.assistant(msg.response_id);
        it.text += msg.delta;
        return [it.id];
      }
      case "response.output_audio_transcript.delta": {
        const it = this.assistant(msg.response_id);
        it.spoken += (it.spoken && !/\s$/.test(it.spoken) ? " " : "") + msg.delta;
        it.segments.push({ offset: msg.offset ?? 0, text: msg.delta });
        return [it.id];
      }
      case "response.output_audio.done": {
        const it = this.assistant(msg.response_id);
        it.audioSamples = msg.samples;
        return [it.id];
      }
      case "bitvoice.metrics": {
        const it = this.assistant(msg.response_id);
        it.metrics = msg.metrics;
        return [it.id];
      }
      case "response.done": {
        const r = msg.response;
        const it = this.assistant(r.id);
        it.status = r.status;
        it.reason = r.reason ?? null;
        // The server's full text wins over the streamed deltas (they should agree).
        if (r.output_text) it.text = r.output_text;
        it.heardText = r.status === "completed" ? null : (r.heard_text ?? "");
        if (msg.metrics) it.metrics = msg.metrics;
        // Nothing was said (push to talk held in silence): no reply, so no bubble.
        if (r.reason === "empty_transcript" && !it.text) this.remove(it.id);
        return [it.id];
      }
      case "conversation.item.truncated": {
        // The person stopped a reply the server had already sent whole (its last words still
        // playing): the server's history now ends where the audio stopped, and so does the
        // page's, with the words not heard struck through as after a barge-in.
        const responseId = responseIdOfItem(msg.item_id);
        const it = responseId === null ? null : this.byId.get(this.key(responseId));
        if (!it || it.kind !== "assistant") return [];
        const played = Math.round((msg.audio_end_ms * OUTPUT_RATE) / 1000);
        const total = Math.max(it.audioSamples, played);
        it.heardText = it.text.slice(0, heardChars(it, played, total));
        it.status = "cancelled";
        it.reason = "client_cancelled";
        return [it.id];
      }
      default:
        return [];
    }
  }
}

function ms(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return null;
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`;
}

/**
 * Per-turn latency figures in words, for a person (labels kept short).
 * @param {object|null} m TurnMetrics as the server sends them
 * @returns {{label: string, value: string, title: string}[]}
 */
export function metricsInWords(m) {
  if (!m) return [];
  const out = [];
  const add = (label, value, title) => {
    if (value !== null) out.push({ label, value, title });
  };
  add("transcript", ms(m.stt_final_ms), "time from the end of your speech to the final transcript");
  add("first word", ms(m.first_token_ms), "time from the end of your speech to the first reply token");
  add("first audio", ms(m.first_audio_ms), "time from the end of your speech to the first reply audio");
  add("total", ms(m.total_ms), "time from the end of your speech to the end of the reply");
  if (Number.isFinite(m.tokens_per_second) && m.tokens_per_second > 0) {
    add("speed", `${m.tokens_per_second.toFixed(1)} tok/s`, "language model tokens per second");
  }
  return out;
}

/** Why a reply ended early, in words. */
export function reasonInWords(status, reason) {
  if (status === "completed" || status === "in_progress") return "";
  const why = {
    turn_detected: "interrupted when you spoke",
    client_cancelled: "stopped",
    session_update: "stopped by a settings change",
    disconnected: "cut off by a lost connection",
    empty_transcript: "not needed: nothing was heard",
    error: "ended by an error",
  };
  const text = why[reason] || (status === "failed" ? "failed" : "stopped");
  return text;
}

/**
 * How many characters of a reply's text the person has heard, from the samples
 * played so far: every TTS segment that started playing counts in proportion to
 * how much of it played (a segment ends where the next starts, the last at the
 * reply's end), rounded up to the end of the word being spoken. The segments' texts are the reply text
 * cut into sentences, so their lengths add up along it.
 * @param {AssistantItem} item
 * @param {number} played samples of this reply played so far
 * @param {number} total samples of this reply known so far (sent or queued)
 * @returns {number} a prefix length of `item.text`
 */
export function heardChars(item, played, total) {
  const segs = item.segments;
  if (segs.length === 0 || played <= 0) return 0;
  let chars = 0;
  for (let i = 0; i < segs.length; i++) {
    const start = segs[i].offset;
    if (played <= start) break;
    const end = i + 1 < segs.length ? segs[i + 1].offset : Math.max(total, start + 1);
    const frac = Math.min(1, (played - start) / Math.max(1, end - start));
    const len = segs[i].text.length;
    // a whole sentence also takes the space that joins it to the next one
    chars += frac >= 1 ? len + 1 : Math.round(len * frac);
    if (frac < 1) break;
  }
  const text = item.text;
  if (chars >= text.length) return text.length;
  if (text[chars - 1] === " ") return chars - 1; // a sentence played, the next not begun
  const space = text.indexOf(" ", chars);
  return space < 0 ? text.length : space;
}
