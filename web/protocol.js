// The client side of the bitvoice realtime protocol (realtime/PROTOCOL.md).
//
// Every JSON message the page sends is built here and nowhere else, so one test
// (tests/web/test_protocol_decode.py) can build each of them under Node and
// check that the server's decoder (realtime.messages.decode_client) accepts it.
// The names are the server's: OpenAI Realtime names where the meaning is the
// same, `bitvoice.*` for our extensions. No DOM and no WebSocket here.

/** Sample rate of the microphone PCM the server expects (binary frames, no header). */
export const INPUT_RATE = 16000;
/** Sample rate of the reply PCM the server streams (binary frames with a header). */
export const OUTPUT_RATE = 24000;
/** Reply audio header: magic "BV", version u8, kind u8, turn u32, offset u32 (little-endian). */
export const AUDIO_HEADER_SIZE = 12;
export const AUDIO_MAGIC_0 = 0x42; // "B"
export const AUDIO_MAGIC_1 = 0x56; // "V"
export const AUDIO_VERSION = 1;
export const AUDIO_FRAME_KIND = 1;
/** Speaking rate range the server accepts (SetSpeed / SessionUpdateConfig.speed). */
export const MIN_SPEED = 0.5;
export const MAX_SPEED = 2.0;
/** Longest system prompt the server accepts (SessionUpdateConfig.instructions). */
export const MAX_INSTRUCTIONS = 8000;
/** Longest typed user message (ResponseCreate.input_text). */
export const MAX_INPUT_TEXT = 8000;
/** Voice names: ASCII letters and digits (the SDK's rule). */
export const VOICE_NAME_RE = /^[A-Za-z0-9]{1,64}$/;

let eventCounter = 0;

/** A fresh client event id (echoed by the server in acks and errors). */
export function newEventId() {
  eventCounter += 1;
  return `c_${eventCounter}`;
}

function clampSpeed(speed) {
  const s = Number(speed);
  if (!Number.isFinite(s)) throw new RangeError(`speed must be a number, got ${speed}`);
  return Math.min(MAX_SPEED, Math.max(MIN_SPEED, Math.round(s * 100) / 100));
}

/**
 * `session.update`: change session settings (the first one starts the session).
 * Only the fields given are sent; the server keeps the others.
 * @param {{voice?: string, speed?: number, language?: string|null, instructions?: string,
 *          vad?: boolean, partialTranscripts?: boolean}} opts
 *   `vad: true` turns server VAD on (with barge-in); `vad: false` sends
 *   `turn_detection: null`, i.e. push-to-talk where the client commits turns.
 */
export function sessionUpdate(opts = {}) {
  const session = {};
  if (opts.voice !== undefined && opts.voice !== null && opts.voice !== "") {
    if (!VOICE_NAME_RE.test(opts.voice)) throw new RangeError(`bad voice name ${opts.voice}`);
    session.voice = opts.voice;
  }
  if (opts.speed !== undefined) session.speed = clampSpeed(opts.speed);
  if (opts.language !== undefined) session.language = opts.language || null;
  if (opts.instructions !== undefined) {
    session.instructions = String(opts.instructions).slice(0, MAX_INSTRUCTIONS);
  }
  if (opts.vad !== undefined) {
    session.turn_detection = opts.vad
      ? { type: "server_vad", create_response: true, interrupt_response: true }
      : null;
  }
  if (opts.partialTranscripts !== undefined) {
    session.partial_transcripts = Boolean(opts.partialTranscripts);
  }
  // Reply audio as binary frames: a third of the bytes of base64 JSON.
  session.output_audio_transport = "binary";
  return { type: "session.update", event_id: newEventId(), session };
}

/** `input_audio_buffer.commit`: push-to-talk released, the buffered audio is a user turn. */
export function inputAudioCommit() {
  return { type: "input_audio_buffer.commit", event_id: newEventId() };
}

/** `input_audio_buffer.clear`: drop buffered microphone audio not yet committed. */
export function inputAudioClear() {
  return { type: "input_audio_buffer.clear", event_id: newEventId() };
}

/**
 * `response.create`: ask for a reply; with `text`, a typed user message comes first.
 * @param {string} [text]
 */
export function responseCreate(text) {
  const msg = { type: "response.create", event_id: newEventId() };
  if (text !== undefined && text !== null && text !== "") {
    msg.input_text = String(text).slice(0, MAX_INPUT_TEXT);
  }
  return msg;
}

/** `response.cancel`: stop the running reply now (LLM, TTS and queued audio). */
export function responseCancel() {
  return { type: "response.cancel", event_id: newEventId() };
}

/** `bitvoice.set_speed`: speaking rate, applied live to audio not yet sent. */
export function setSpeed(speed) {
  return { type: "bitvoice.set_speed", event_id: newEventId(), speed: clampSpeed(speed) };
}

/** `bitvoice.pause`: the server stops sending reply audio (kept, not lost). */
export function pause() {
  return { type: "bitvoice.pause", event_id: newEventId() };
}

/** `bitvoice.resume`: continue reply audio from where it paused. */
export function resume() {
  return { type: "bitvoice.resume", event_id: newEventId() };
}

/**
 * `bitvoice.playback`: how many samples of a reply the person has heard, so the
 * history keeps only what was heard when the reply is cut off.
 * @param {string} responseId
 * @param {number} playedSamples
 */
export function playback(responseId, playedSamples) {
  return {
    type: "bitvoice.playback",
    event_id: newEventId(),
    response_id: String(responseId),
    played_samples: Math.max(0, Math.floor(playedSamples)),
  };
}

/** `bitvoice.ping`: round-trip probe, answered by `bitvoice.pong`. */
export function ping() {
  return { type: "bitvoice.ping", event_id: newEventId() };
}

/** `bitvoice.close`: cancel the turn; the connection stays open. */
export function close() {
  return { type: "bitvoice.close", event_id: newEventId() };
}

/** Every builder above with representative arguments (used by the decode test). */
export function allClientMessageExamples() {
  return [
    sessionUpdate({
      voice: "alba",
      speed: 1.25,
      language: "en",
      instructions: "Be brief.",
      vad: true,
      partialTranscripts: true,
    }),
    sessionUpdate({ vad: false }),
    sessionUpdate({ language: "" }),
    sessionUpdate({ speed: 9 }),
    sessionUpdate({}),
    inputAudioCommit(),
    inputAudioClear(),
    responseCreate(),
    responseCreate("Hello there"),
    responseCancel(),
    setSpeed(0.5),
    setSpeed(2),
    setSpeed(1.337),
    pause(),
    resume(),
    playback("resp_3", 4800.7),
    itemTruncate("resp_2", 1500.9),
    ping(),
    close(),
  ];
}

/** The response id of a turn number (the binary header carries the number). */
export function responseIdFor(turn) {
  return `resp_${turn}`;
}

const ASSISTANT_ITEM_PREFIX = "item_"; // realtime.messages.assistant_item_id

/** The id of the assistant item a response produces (what a truncate names). */
export function assistantItemId(responseId) {
  return `${ASSISTANT_ITEM_PREFIX}${responseId}`;
}

/** The response id of an assistant item id (the inverse of `assistantItemId`), or null. */
export function responseIdOfItem(itemId) {
  const id = String(itemId);
  return id.startsWith(ASSISTANT_ITEM_PREFIX) ? id.slice(ASSISTANT_ITEM_PREFIX.length) : null;
}

/**
 * `conversation.item.truncate`: the user heard only the first `audioEndMs` of a reply the
 * server has finished sending; its history keeps only the words heard.
 */
export function itemTruncate(responseId, audioEndMs) {
  return {
    type: "conversation.item.truncate",
    event_id: newEventId(),
    item_id: assistantItemId(responseId),
    content_index: 0,
    audio_end_ms: Math.max(0, Math.floor(audioEndMs)),
  };
}

/** Turn number of a response id `resp_<n>`, or null. */
export function turnOfResponseId(responseId) {
  const m = /^resp_(\d+)$/.exec(String(responseId));
  return m ? Number(m[1]) : null;
}

/**
 * Parse one binary reply audio frame.
 * @param {ArrayBuffer} buffer
 * @returns {{turn: number, offset: number, pcm: ArrayBuffer}}
 * @throws {Error} when it is not a bitvoice reply audio frame
 */
export function parseAudioFrame(buffer) {
  if (buffer.byteLength < AUDIO_HEADER_SIZE) throw new Error("audio frame shorter than its header");
  const v = new DataView(buffer);
  if (
    v.getUint8(0) !== AUDIO_MAGIC_0 ||
    v.getUint8(1) !== AUDIO_MAGIC_1 ||
    v.getUint8(2) !== AUDIO_VERSION ||
    v.getUint8(3) !== AUDIO_FRAME_KIND
  ) {
    throw new Error("not a bitvoice reply audio frame");
  }
  if ((buffer.byteLength - AUDIO_HEADER_SIZE) % 2) {
    throw new Error("audio frame payload is not whole PCM16 samples");
  }
  return {
    turn: v.getUint32(4, true),
    offset: v.getUint32(8, true),
    pcm: buffer.slice(AUDIO_HEADER_SIZE),
  };
}

/**
 * Decode a base64 string to an ArrayBuffer (for `response.output_audio.delta`,
 * used only when the session asked for JSON audio).
 * @param {string} b64
 */
export function base64ToBuffer(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

// Error codes the server sends (realtime.messages.ERROR_CODES), in words for a person.
const ERROR_WORDS = {
  invalid_json: "The page sent a message the server could not read.",
  unknown_type: "The page and the server disagree about the protocol; reload the page.",
  invalid_field: "A setting was out of range.",
  message_too_large: "A message was too large for the server.",
  session_not_started: "The session had not started yet.",
  audio_rate_exceeded: "The microphone sent audio faster than real time.",
  invalid_audio: "The microphone audio was not in the expected format.",
  unknown_voice: "The server has no voice by that name.",
  unsupported_language: "The speech recognizer cannot transcribe that language.",
  no_active_response: "There is no reply to stop or pause right now.",
  conversation_busy: "The assistant is still answering; wait or press Stop.",
  empty_input: "Nothing was heard to answer.",
  unauthorized: "The server refused the connection (wrong or missing token).",
  origin_forbidden: "The server does not accept connections from this page's address.",
  admission_rejected: "The server is busy with other conversations; trying again shortly.",
  idle_timeout: "The connection was closed after a long idle time.",
  session_expired: "The session reached its maximum length; starting a new one.",
  invalid_request: "The server rejected a request.",
  context_overflow: "The conversation got too long for the model; its history was reset.",
  progress_timeout: "The model stopped making progress; the reply was ended.",
  session_exhausted: "The conversation reached its token limit; its history was reset.",
  component_lifecycle: "A speech or language engine is not running on the server.",
  internal_error: "The server hit an unexpected fault; the reply was ended.",
};

/**
 * A sentence a person can read for a server `error` event.
 * @param {{code?: string, message?: string}} error
 */
export function errorInWords(error) {
  const code = error && error.code ? String(error.code) : "internal_error";
  const words = ERROR_WORDS[code] || "The server reported a problem.";
  const detail = error && error.message ? ` (${error.message})` : "";
  return `${words}${detail}`;
}
