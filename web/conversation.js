// The conversation as the page shows it, built from server messages.
//
// Pure state, no DOM: `apply(msg)` folds one server message in and returns the
// ids of the items it changed, so the page re-renders only those (and Node
// tests can check the folding without a browser).

/**
 * @typedef {{kind: "user", id: string, text: string, partial: boolean, source: "voice"|"typed"}} UserItem
 * @typedef {{kind: "assistant", id: string, text: string, spoken: string, status: string,
 *            reason: string|null, heardText: string|null, metrics: object|null,
 *            audioSamples: number}} AssistantItem
 */

export class Conversation {
  constructor() {
    /** @type {(UserItem|AssistantItem)[]} */
    this.items = [];
    /** @type {Map<string, UserItem|AssistantItem>} */
    this.byId = new Map();
    this.typedCount = 0;
  }

  /** Forget everything (a new server session has no memory of the old one). */
  clear() {
    this.items = [];
    this.byId.clear();
  }

  /** @returns {UserItem} */
  user(id) {
    let item = this.byId.get(id);
    if (!item) {
      item = { kind: "user", id, text: "", partial: true, source: "voice" };
      this.add(item);
    }
    return item;
  }

  /** @returns {AssistantItem} */
  assistant(id) {
    let item = this.byId.get(id);
    if (!item) {
      item = {
        kind: "assistant",
        id,
        text: "",
        spoken: "",
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
    this.add({ kind: "user", id, text, partial: false, source: "typed" });
    return id;
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
        this.user(msg.item_id);
        return [msg.item_id];
      case "conversation.item.input_audio_transcription.delta": {
        const it = this.user(msg.item_id);
        // Each partial replaces the previous one (PROTOCOL.md), it is not appended.
        if (it.partial) it.text = msg.delta;
        return [msg.item_id];
      }
      case "conversation.item.input_audio_transcription.completed": {
        const it = this.user(msg.item_id);
        it.text = msg.transcript;
        it.partial = false;
        if (!msg.transcript.trim()) this.remove(msg.item_id);
        return [msg.item_id];
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
    error: "ended by an error",
  };
  const text = why[reason] || (status === "failed" ? "failed" : "stopped");
  return text;
}
