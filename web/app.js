// The bitvoice page: wires the socket, the audio engine and the conversation
// view together. Protocol names and message shapes live in protocol.js.

import { AudioEngine } from "./audio.js";
import { ReconnectingSocket, realtimeUrl } from "./connection.js";
import { Conversation, heardChars, metricsInWords, reasonInWords } from "./conversation.js";
import * as P from "./protocol.js";
import { loadSettings, saveSettings } from "./settings.js";

/** Keep at most this many JSON messages in the test/debug logs on `window.bitvoice`. */
const LOG_LIMIT = 500;
/** Drop microphone frames rather than queue them when the socket is this far behind. */
const MAX_SOCKET_BACKLOG_BYTES = 64 * 1024;
/** Ping the server this often: keeps the idle timer fed and measures the round trip. */
const PING_INTERVAL_MS = 15000;
/** Wait this long after push-to-talk release for the last microphone frames. */
const PTT_TAIL_MS = 80;
/** Debounce of the speed slider before `bitvoice.set_speed` is sent. */
const SPEED_DEBOUNCE_MS = 120;
/** Errors shown at once; older ones scroll away. */
const MAX_ERRORS_SHOWN = 3;
/** How often the agent state, the voice visual and the heard-words highlight refresh. */
const TICK_MS = 100;
/** Reply samples per millisecond (24 kHz): moves the heard position between worklet stats. */
const OUTPUT_SAMPLES_PER_MS = P.OUTPUT_RATE / 1000;
/** The playback worklet reports about every 64 render quanta (341 ms at 24 kHz). */
const STATS_GAP_MS = 400;
/** Entries kept in the developer event log view. */
const DEVLOG_LIMIT = 200;
/** Error codes about getting a connection at all: shown once, gone once a session starts. */
const CONNECTION_ERRORS = new Set(["admission_rejected", "unauthorized", "origin_forbidden"]);
/** Agent states in words (the indicator's text; its data-state drives the visual). */
const AGENT_WORDS = {
  offline: "Offline",
  idle: "Ready",
  listening: "Listening",
  thinking: "Thinking…",
  speaking: "Speaking",
  paused: "Paused",
};

const params = new URLSearchParams(window.location.search);
/** `?kiosk`: full screen, one big control, captions; `&settings` shows the settings too. */
const KIOSK = params.has("kiosk");
const storage = (() => {
  try {
    return window.localStorage;
  } catch {
    return null; // storage blocked: settings last for this page only
  }
})();

const $ = (id) => document.getElementById(id);

const el = {
  conn: $("conn"),
  connText: $("conn-text"),
  connRtt: $("conn-rtt"),
  connDetail: $("conn-detail"),
  talk: $("talk"),
  agent: $("agent"),
  agentText: $("agent-text"),
  viz: $("voice-viz"),
  captionUser: $("caption-user"),
  captionAssistant: $("caption-assistant"),
  send: $("send"),
  typedState: $("typed-state"),
  micDevice: $("mic-device"),
  speakerDevice: $("speaker-device"),
  speakerNote: $("speaker-note"),
  clear: $("clear"),
  exportBtn: $("export"),
  devlogToggle: $("devlog-toggle"),
  devlog: $("devlog"),
  devlogList: $("devlog-list"),
  retry: $("retry"),
  notice: $("notice"),
  errors: $("errors"),
  conversation: $("conversation"),
  empty: $("empty"),
  typed: $("typed"),
  typedText: $("typed-text"),
  mic: $("mic"),
  micState: $("mic-state"),
  level: $("level"),
  levelBar: $("level-bar"),
  ptt: $("ptt"),
  pttHelp: $("ptt-help"),
  stop: $("stop"),
  pause: $("pause"),
  replyState: $("reply-state"),
  speed: $("speed"),
  speedOut: $("speed-out"),
  voice: $("voice"),
  instructions: $("instructions"),
  applyInstructions: $("apply-instructions"),
  instructionsState: $("instructions-state"),
  lastMetrics: $("last-metrics"),
};

/** Everything the page knows; exposed on `window.bitvoice` for tests and debugging. */
const S = {
  connState: "connecting",
  session: null,
  started: false,
  mode: "vad", // "vad" (server voice detection) or "ptt" (push to talk)
  micLive: false, // microphone on and not muted
  pttHeld: false,
  paused: false,
  held: false, // bitvoice.audio.hold: the user may be talking over the reply; playback stopped
  currentTurn: null, // number of the response now running or playing
  responseRunning: false,
  flushed: new Set(), // response numbers the page must not play any more
  framesSent: 0,
  framesReceived: 0,
  framesDropped: 0,
  rttMs: null,
  voices: [],
  afterDone: [], // actions waiting for the running response to end
  userSpeaking: false, // between speech_started and speech_stopped
  transcribing: false, // between speech_stopped (or commit) and the final transcript
  agent: "offline",
  voiceDb: -100, // the assistant's voice level now (what the visual draws)
  playStatsAt: 0, // performance.now() of the last playback stats
  kiosk: KIOSK,
};

const conversation = new Conversation();
const sentLog = [];
const receivedLog = [];
let playStats = null;
let lastStop = null;
/** Characters of each assistant item heard so far (only while its audio plays). */
const heardPos = new Map();
const saved = loadSettings(storage);
let micDb = -100; // the microphone's level now (the visual draws it while listening)

function logPush(log, entry) {
  log.push(entry);
  if (log.length > LOG_LIMIT) log.splice(0, log.length - LOG_LIMIT);
}

const audio = new AudioEngine({
  onFrame: (pcm) => sendMicFrame(pcm),
  onLevel: (dbfs) => showLevel(dbfs),
  onStats: (stats) => {
    playStats = stats;
    S.playStatsAt = performance.now();
    updateReplyControls();
    followPlayback();
  },
});

const socket = new ReconnectingSocket(realtimeUrl(window.location), {
  onOpen: () => {},
  onJson: (msg) => onServerMessage(msg),
  onBinary: (buf) => onAudioFrame(buf),
  onState: (state, detail) => onConnState(state, detail),
});

window.bitvoice = {
  state: S,
  conversation,
  sent: sentLog,
  received: receivedLog,
  get playback() {
    return playStats;
  },
  get lastStop() {
    return lastStop;
  },
  audio,
  socket,
  captureTap: null,
  settings: () => loadSettings(storage),
};

// --- sending ---------------------------------------------------------------------------------

function send(msg) {
  const ok = socket.send(msg);
  if (ok) {
    logPush(sentLog, { ...msg, t: performance.now() });
    devlogAdd("sent", msg);
  }
  return ok;
}

function sendMicFrame(pcm) {
  // Tests set `window.bitvoice.captureTap` to an array to see exactly what the worklet made.
  const tap = window.bitvoice.captureTap;
  if (Array.isArray(tap)) tap.push(Array.from(new Int16Array(pcm)));
  if (!S.started || !socket.isOpen) return;
  const wanted = S.mode === "vad" ? S.micLive : S.pttHeld;
  if (!wanted) return;
  // A stalled network must not turn into seconds of stale speech later.
  if (socket.bufferedAmount > MAX_SOCKET_BACKLOG_BYTES) return;
  if (socket.send(pcm)) S.framesSent += 1;
}

function sessionSettings() {
  const opts = { vad: S.mode === "vad", speed: Number(el.speed.value), partialTranscripts: true };
  // A remembered voice goes only once the server lists it (loadVoices): an unknown one
  // would make the server refuse the session.update that starts the session.
  if (el.voice.value && S.voices.includes(el.voice.value)) opts.voice = el.voice.value;
  const instructions = el.instructions.value.trim();
  if (instructions) opts.instructions = instructions;
  return opts;
}

// --- connection ------------------------------------------------------------------------------

function onConnState(state, detail) {
  S.connState = state;
  el.conn.dataset.state = state;
  el.retry.hidden = state !== "waiting";
  if (state !== "waiting") setText(el.connDetail, "");
  if (state === "connecting") {
    setText(el.connText, detail.attempt > 0 ? "Reconnecting…" : "Connecting…");
  } else if (state === "open") {
    setText(el.connText, "Connected, starting session…");
  } else if (state === "waiting") {
    retryAt = performance.now() + detail.delayMs;
    retryWhy = closeInWords(detail.code, detail.reason);
    showRetryCountdown();
    onDisconnected();
  } else {
    setText(el.connText, "Disconnected.");
    onDisconnected();
  }
  updateTyping();
}

let retryAt = 0;
let retryWhy = "";

function showRetryCountdown() {
  if (S.connState !== "waiting") {
    setText(el.connDetail, "");
    return;
  }
  const secs = Math.max(1, Math.ceil((retryAt - performance.now()) / 1000));
  // The status region announces why; the countdown ticks beside it, unannounced.
  setText(el.connText, retryWhy);
  setText(el.connDetail, `Retrying in ${secs} s.`);
}
setInterval(showRetryCountdown, 500);

function closeInWords(code, reason) {
  if (code === 1013) return "The server is busy.";
  if (code === 1009) return "A message was too large; the server closed the connection.";
  if (code === 1000 && reason) return `The server closed the connection (${reason}).`;
  if (code === 1006 || code === undefined || code === 0) return "Cannot reach the server.";
  return "The connection was lost.";
}

function onDisconnected() {
  S.started = false;
  if (S.responseRunning || S.currentTurn !== null) {
    audio.flush(S.currentTurn ?? 0);
  }
  S.responseRunning = false;
  S.currentTurn = null;
  S.flushed.clear();
  S.afterDone = [];
  S.userSpeaking = false;
  S.transcribing = false;
  el.connRtt.textContent = "";
  // Nothing in flight will finish: the cut-off reply stops streaming, the user's
  // half-transcribed words keep what was heard, and the reply state says so.
  heardPos.clear();
  for (const id of conversation.disconnected()) renderItem(id);
  setReplyState(S.paused ? "Paused" : "Idle");
  updateReplyControls();
}

// --- server messages -------------------------------------------------------------------------

function onServerMessage(msg) {
  logPush(receivedLog, { type: msg.type, t: performance.now(), msg });
  if (msg.type !== "bitvoice.pong") devlogAdd("received", msg);
  switch (msg.type) {
    case "session.created":
      onSessionCreated(msg.session);
      return;
    case "session.updated":
      onSessionUpdated(msg.session);
      return;
    case "error":
      showError(P.errorInWords(msg.error), msg.error.code);
      return;
    case "input_audio_buffer.speech_started":
      S.userSpeaking = true;
      setReplyState("Listening…");
      break;
    case "input_audio_buffer.speech_stopped":
      S.userSpeaking = false;
      S.transcribing = true;
      setReplyState("Transcribing…");
      break;
    case "input_audio_buffer.committed":
      S.transcribing = true;
      break;
    case "conversation.item.input_audio_transcription.completed":
      S.transcribing = false;
      break;
    case "response.created": {
      const turn = P.turnOfResponseId(msg.response.id);
      S.currentTurn = turn;
      S.responseRunning = true;
      setReplyState(S.paused ? "Paused" : "Thinking…");
      break;
    }
    case "response.output_audio.delta": {
      // JSON transport (only if a session asked for it): same path as binary frames.
      const turn = P.turnOfResponseId(msg.response_id);
      playFrame(turn, P.base64ToBuffer(msg.audio));
      break;
    }
    case "response.output_audio.done": {
      const turn = P.turnOfResponseId(msg.response_id);
      if (turn !== null && !S.flushed.has(turn)) audio.end(turn);
      break;
    }
    case "bitvoice.audio.hold":
      // speech over the reply: silent at once, the queue kept (a backchannel releases it)
      S.held = true;
      audio.pause();
      break;
    case "bitvoice.audio.release":
      S.held = false;
      if (!S.paused) audio.resume();
      break;
    case "bitvoice.audio.flush": {
      const turn = P.turnOfResponseId(msg.response_id);
      if (turn !== null) {
        S.flushed.add(turn);
        audio.flush(turn);
      }
      if (S.held) {
        S.held = false; // the hold ends with the reply it held
        if (!S.paused) audio.resume();
      }
      break;
    }
    case "bitvoice.metrics":
      showLastMetrics(msg.metrics);
      break;
    case "response.done": {
      const turn = P.turnOfResponseId(msg.response.id);
      if (msg.response.status !== "completed" && turn !== null && !S.flushed.has(turn)) {
        S.flushed.add(turn);
        audio.flush(turn);
      }
      if (turn !== null && turn === S.currentTurn) S.responseRunning = false;
      S.transcribing = false;
      if (msg.metrics) showLastMetrics(msg.metrics);
      setReplyState(replyDoneInWords(msg.response));
      const waiting = S.afterDone;
      S.afterDone = [];
      for (const fn of waiting) fn();
      break;
    }
    case "bitvoice.paused":
      S.paused = true;
      break;
    case "bitvoice.resumed":
      S.paused = false;
      break;
    case "bitvoice.speed_set":
      el.speedOut.textContent = `${Number(msg.speed).toFixed(2)}×`;
      break;
    case "bitvoice.pong":
      if (msg.client_event_id && pingSentAt.has(msg.client_event_id)) {
        S.rttMs = performance.now() - pingSentAt.get(msg.client_event_id);
        pingSentAt.delete(msg.client_event_id);
        showConnected();
      }
      return;
    default:
      break;
  }
  for (const id of conversation.apply(msg)) renderItem(id);
  updateReplyControls();
}

function onSessionCreated(session) {
  const reconnected = S.session !== null;
  S.session = session;
  S.started = false;
  S.paused = false;
  S.held = false;
  S.currentTurn = null;
  S.responseRunning = false;
  S.flushed.clear();
  audio.reset();
  if (reconnected && conversation.items.length > 0) addDivider("Reconnected: a new session starts here.");
  // The new session's ids restart at resp_1: a new prefix keeps the old bubbles apart.
  conversation.newConnection();
  // The first session.update starts the session; it carries every setting shown.
  send(P.sessionUpdate(sessionSettings()));
  loadVoices(session);
  updateReplyControls();
}

function onSessionUpdated(session) {
  S.session = session;
  if (!S.started) {
    S.started = true;
    socket.markHealthy();
    showConnected();
    clearErrors((code) => CONNECTION_ERRORS.has(code));
    updateTyping();
  }
  if (session.notice) {
    el.notice.textContent = `Note: ${session.notice}.`;
    el.notice.hidden = false;
  } else {
    el.notice.hidden = true;
  }
  if (session.voice && el.voice.value !== session.voice) ensureVoiceOption(session.voice, true);
  if (pendingInstructions && session.instructions === pendingInstructions) {
    el.instructionsState.textContent = "Applied.";
    pendingInstructions = null;
  }
}

function showConnected() {
  if (S.connState !== "open") return;
  const model = S.session && S.session.model ? ` to ${S.session.model}` : "";
  // The round trip changes on every ping: it sits outside the status region, which
  // announces only the connection's changes.
  el.connRtt.textContent = S.rttMs !== null ? `${Math.round(S.rttMs)} ms round trip` : "";
  setText(el.connText, S.started ? `Connected${model}` : "Connected, starting session…");
}

function replyDoneInWords(r) {
  if (r.status === "completed") return "Idle";
  if (r.reason === "empty_transcript") return "Nothing was heard.";
  return `Reply ${reasonInWords(r.status, r.reason)}.`;
}

// --- reply audio -----------------------------------------------------------------------------

function onAudioFrame(buf) {
  let frame;
  try {
    frame = P.parseAudioFrame(buf);
  } catch {
    S.framesDropped += 1;
    return;
  }
  playFrame(frame.turn, frame.pcm);
}

function playFrame(turn, pcm) {
  // Only the current response plays; a flushed (stopped, barged-in) one never does.
  if (turn === null || turn !== S.currentTurn || S.flushed.has(turn)) {
    S.framesDropped += 1;
    return;
  }
  S.framesReceived += 1;
  audio.push(turn, pcm);
  if (!S.paused) setReplyState("Speaking");
}

/** The page-wide id of the assistant item of response number `turn`. */
function itemOfTurn(turn) {
  return conversation.key(P.responseIdFor(turn));
}

/** Stop the reply now: silence locally first, then tell the server. */
async function stopReply() {
  const clickAt = performance.now();
  const turn = S.currentTurn;
  if (turn === null) return;
  S.flushed.add(turn);
  const ack = await audio.flush(turn);
  const heard = ack && ack.flushedTurn === turn ? ack.flushedPlayed : null;
  lastStop = {
    turn,
    clickAt,
    flushedAt: performance.now(),
    acked: ack !== null,
    samplesPlayedAtFlush: ack ? ack.samplesPlayed : null,
    heardSamples: heard, // of this reply
    serverRunning: S.responseRunning,
  };
  if (S.responseRunning) {
    // Tell the server what was really heard before cancelling, so the history keeps that.
    if (heard !== null) send(P.playback(P.responseIdFor(turn), heard));
    send(P.responseCancel());
  } else if (heard !== null) {
    // The server sent all of it and keeps it whole: trim its history to what was heard.
    send(P.itemTruncate(P.responseIdFor(turn), heard / OUTPUT_SAMPLES_PER_MS));
  }
  setReplyState("Reply stopped.");
  updateReplyControls();
}

function runAfterDone(fn) {
  if (S.responseRunning) S.afterDone.push(fn);
  else fn();
}

function togglePause() {
  audio.unlock();
  if (S.paused) {
    S.paused = false;
    if (!S.held) audio.resume();
    send(P.resume());
    setReplyState(S.responseRunning ? "Speaking" : "Idle");
  } else {
    S.paused = true;
    audio.pause();
    send(P.pause());
    setReplyState("Paused");
  }
  updateReplyControls();
}

// --- microphone ------------------------------------------------------------------------------

async function toggleMic() {
  audio.unlock();
  if (!audio.micOn) {
    el.mic.disabled = true;
    el.micState.textContent = "Asking for the microphone…";
    try {
      await audio.startMic();
    } catch (err) {
      el.mic.disabled = false;
      el.micState.textContent = "Off";
      showError(micErrorInWords(err), "microphone");
      updateTalk();
      return;
    }
    el.mic.disabled = false;
    clearErrors((code) => code === "microphone");
    setMicLive(S.mode === "vad");
    listDevices();
    return;
  }
  if (S.mode === "ptt") {
    // Push to talk sends only while the talk button is held; this button turns the mic off.
    await audio.stopMic();
    setMicLive(false);
    return;
  }
  setMicLive(!S.micLive);
}

function setMicLive(live) {
  S.micLive = live && audio.micOn;
  audio.setMuted(!(S.micLive || S.pttHeld));
  // The label says what a press does; no aria-pressed on top of a changing label.
  el.mic.classList.toggle("primary", !audio.micOn);
  el.mic.classList.toggle("on", S.micLive);
  if (!audio.micOn) {
    el.mic.textContent = "Start microphone";
    el.micState.textContent = "Off";
  } else if (S.mode === "ptt") {
    el.mic.textContent = "Turn microphone off";
    el.micState.textContent = S.pttHeld ? "Sending…" : "Ready";
  } else {
    el.mic.textContent = S.micLive ? "Mute" : "Unmute";
    el.micState.textContent = S.micLive ? "Listening" : "Muted";
  }
  updateTalk();
}

function micErrorInWords(err) {
  const name = err && err.name;
  if (name === "NotAllowedError") {
    return "The browser did not allow the microphone. Allow it in the address bar and try again.";
  }
  if (name === "NotFoundError") return "No microphone was found.";
  if (name === "NotReadableError") return "The microphone is in use by another program.";
  return `The microphone could not start: ${err && err.message ? err.message : err}`;
}

async function pttDown() {
  if (S.pttHeld) return;
  audio.unlock();
  if (!audio.micOn) {
    try {
      await audio.startMic();
    } catch (err) {
      showError(micErrorInWords(err), "microphone");
      return;
    }
  }
  // Talking over the assistant stops it, as barge-in does in hands-free mode.
  if (S.responseRunning || (playStats && playStats.queuedSamples > 0)) await stopReply();
  send(P.inputAudioClear());
  S.pttHeld = true;
  el.ptt.classList.add("held");
  el.ptt.textContent = "Release to send";
  setMicLive(S.micLive);
}

function pttUp() {
  if (!S.pttHeld) return;
  el.ptt.classList.remove("held");
  el.ptt.textContent = "Hold to talk";
  // The last frames are still in the worklet; let them out before committing.
  setTimeout(() => {
    S.pttHeld = false;
    setMicLive(S.micLive);
    runAfterDone(() => {
      send(P.inputAudioCommit());
      send(P.responseCreate());
    });
  }, PTT_TAIL_MS);
}

function setMode(mode, { tell = true } = {}) {
  if (mode === S.mode) return;
  S.mode = mode;
  const ptt = mode === "ptt";
  el.ptt.hidden = !ptt;
  el.pttHelp.hidden = !ptt;
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.checked = radio.value === mode;
  }
  if (ptt) S.micLive = false;
  else if (audio.micOn) S.micLive = true;
  setMicLive(S.micLive);
  saveSettings(storage, { mode });
  if (tell) send(P.sessionUpdate({ vad: !ptt }));
}

function showLevel(dbfs) {
  micDb = dbfs;
  const clamped = Math.max(-60, Math.min(0, dbfs));
  const pct = ((clamped + 60) / 60) * 100;
  el.levelBar.style.width = `${pct.toFixed(0)}%`;
  el.level.setAttribute("aria-valuenow", String(Math.round(clamped)));
  el.level.setAttribute("aria-valuetext", dbfs <= -60 ? "silent" : `${Math.round(dbfs)} dB`);
}

// --- settings --------------------------------------------------------------------------------

let speedTimer = null;
let pendingInstructions = null;

function onSpeedInput() {
  const v = Number(el.speed.value);
  el.speedOut.textContent = `${v.toFixed(2)}×`;
  saveSettings(storage, { speed: v });
  if (speedTimer !== null) clearTimeout(speedTimer);
  speedTimer = setTimeout(() => {
    speedTimer = null;
    send(P.setSpeed(v));
  }, SPEED_DEBOUNCE_MS);
}

function applyInstructions() {
  const text = el.instructions.value.trim();
  pendingInstructions = text;
  saveSettings(storage, { instructions: text });
  el.instructionsState.textContent = S.started ? "Applying…" : "Will apply when connected.";
  send(P.sessionUpdate({ instructions: text }));
}

async function loadVoices(session) {
  // The session may list voices; otherwise ask the HTTP side. Either may be absent,
  // in which case the picker offers the server default and the session's voice.
  let voices = Array.isArray(session.voices) ? session.voices : null;
  if (!voices) {
    try {
      const res = await fetch(new URL("/v1/voices", window.location.href));
      if (res.ok) {
        const body = await res.json();
        voices = Array.isArray(body) ? body : body.voices;
      }
    } catch {
      voices = null;
    }
  }
  const names = (voices || [])
    .map((v) => (typeof v === "string" ? v : v && (v.name || v.id)))
    .filter((v) => typeof v === "string" && P.VOICE_NAME_RE.test(v));
  S.voices = names;
  for (const name of names) ensureVoiceOption(name, false);
  // The remembered voice (as saved now: it may have changed since the page loaded),
  // now that the server says it has it.
  const want = loadSettings(storage).voice;
  if (want && names.includes(want) && session.voice !== want) {
    ensureVoiceOption(want, true);
    send(P.sessionUpdate({ voice: want }));
  } else if (session.voice) {
    ensureVoiceOption(session.voice, el.voice.value === "");
  }
}

function ensureVoiceOption(name, select) {
  let opt = Array.from(el.voice.options).find((o) => o.value === name);
  if (!opt) {
    opt = new Option(name, name);
    el.voice.add(opt);
  }
  if (select) el.voice.value = name;
}

// --- rendering -------------------------------------------------------------------------------

/** Write `text` only when it changed: a live region announces every write. */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setReplyState(text) {
  setText(el.replyState, text);
}

function replyPlaying() {
  return playStats !== null && (playStats.queuedSamples > 0 || playStats.playing);
}

function updateReplyControls() {
  const playing = replyPlaying();
  const canStop = S.responseRunning || (playing && S.currentTurn !== null && !S.flushed.has(S.currentTurn));
  el.stop.disabled = !canStop;
  // Pause holds a reply; with none running or playing there is nothing to hold (a
  // pause pressed while idle would silently hold the next reply). Resume stays on.
  el.pause.disabled = !S.paused && !S.responseRunning && !playing;
  setText(el.pause, S.paused ? "Resume" : "Pause");
  updateTalk();
  updateAgent();
}

/** Send is on only while a session runs: a message typed meanwhile would be lost. */
function updateTyping() {
  const off = !S.started;
  el.send.disabled = off;
  setText(el.typedState, off ? "Not connected: sending is off until the connection is back." : "");
}

function nearBottom() {
  const c = el.conversation;
  return c.scrollHeight - c.scrollTop - c.clientHeight < 80;
}

function addDivider(text) {
  const li = document.createElement("li");
  li.className = "divider muted small";
  li.textContent = text;
  el.conversation.append(li);
}

function renderItem(id) {
  const stick = nearBottom();
  showCaption(conversation.byId.get(id));
  const item = conversation.byId.get(id);
  let li = el.conversation.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (!item) {
    if (li) li.remove();
    el.empty.hidden = el.conversation.children.length > 0;
    return;
  }
  if (!li) {
    li = document.createElement("li");
    li.dataset.id = id;
    el.conversation.append(li);
  }
  el.empty.hidden = true;
  if (item.kind === "user") renderUser(li, item);
  else renderAssistant(li, item);
  if (stick) el.conversation.scrollTop = el.conversation.scrollHeight;
}

function renderUser(li, item) {
  li.className = `msg user${item.partial ? " partial" : ""}`;
  li.setAttribute("aria-busy", String(item.partial));
  li.replaceChildren(
    span("who", item.source === "typed" ? "You (typed)" : "You"),
    span("body", item.text || (item.partial ? "…" : "")),
  );
}

function renderAssistant(li, item) {
  const streaming = item.status === "in_progress";
  li.className = `msg assistant${streaming ? " streaming" : ""}`;
  li.dataset.status = item.status;
  // Screen readers announce the reply once it is complete, not every streamed word,
  // nor every move of the heard-words mark while its audio still plays.
  const heard = heardPos.get(item.id);
  li.setAttribute("aria-busy", String(streaming || heard !== undefined));
  const body = span("body", "");
  if (heard !== undefined && item.heardText === null && heard < item.text.length) {
    // Playing: the words heard so far are marked, the rest follows the audio.
    body.append(span("heard", item.text.slice(0, heard)), item.text.slice(heard));
  } else if (item.heardText !== null && item.text.startsWith(item.heardText)) {
    // Interrupted: what the person heard, then the part they did not hear, struck through.
    body.append(item.heardText);
    const rest = item.text.slice(item.heardText.length);
    if (rest) {
      const unheard = span("unheard", rest);
      unheard.title = "not heard: the reply was cut off here";
      body.append(unheard);
    }
  } else {
    body.append(item.text);
  }
  const children = [span("who", "Assistant"), body];
  const why = reasonInWords(item.status, item.reason);
  if (why) children.push(span("status", `Reply ${why}.`));
  const figures = metricsInWords(item.metrics);
  if (figures.length > 0) {
    const ul = document.createElement("ul");
    ul.className = "figures";
    ul.setAttribute("aria-label", "latency of this turn");
    for (const f of figures) {
      const fig = document.createElement("li");
      fig.title = f.title;
      fig.append(`${f.label} `);
      const b = document.createElement("b");
      b.textContent = f.value;
      fig.append(b);
      ul.append(fig);
    }
    children.push(ul);
  }
  li.replaceChildren(...children);
}

function span(cls, text) {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

function showLastMetrics(metrics) {
  const figures = metricsInWords(metrics);
  if (figures.length === 0) return;
  const nodes = [];
  for (const f of figures) {
    const dt = document.createElement("dt");
    dt.textContent = f.label;
    dt.title = f.title;
    const dd = document.createElement("dd");
    dd.textContent = f.value;
    nodes.push(dt, dd);
  }
  el.lastMetrics.replaceChildren(...nodes);
}

function showError(text, code) {
  // The same error again (a refused retry, a second denied click) is not news: one box.
  for (const old of el.errors.children) {
    if (old.dataset.code === (code || "") && old.dataset.text === text) return;
  }
  // A newer error of the same kind replaces the older one.
  for (const old of [...el.errors.children]) {
    if (code && old.dataset.code === code) old.remove();
  }
  const box = document.createElement("div");
  box.className = "error";
  box.dataset.code = code || "";
  box.dataset.text = text;
  const p = document.createElement("p");
  p.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "link";
  close.textContent = "Dismiss";
  close.addEventListener("click", () => box.remove());
  box.append(p, close);
  el.errors.append(box);
  while (el.errors.children.length > MAX_ERRORS_SHOWN) el.errors.firstElementChild.remove();
}

/** Remove the error boxes whose code `which(code)` accepts (their cause is gone). */
function clearErrors(which) {
  for (const box of [...el.errors.children]) if (which(box.dataset.code)) box.remove();
}

// --- wiring ----------------------------------------------------------------------------------

const pingSentAt = new Map();
setInterval(() => {
  if (!S.started) return;
  const msg = P.ping();
  if (send(msg)) pingSentAt.set(msg.event_id, performance.now());
  if (pingSentAt.size > 10) pingSentAt.delete(pingSentAt.keys().next().value);
}, PING_INTERVAL_MS);

el.mic.addEventListener("click", () => toggleMic());
el.stop.addEventListener("click", () => stopReply());
el.pause.addEventListener("click", () => togglePause());
el.retry.addEventListener("click", () => socket.retryNow());
el.speed.addEventListener("input", () => onSpeedInput());
el.voice.addEventListener("change", () => {
  saveSettings(storage, { voice: el.voice.value });
  if (el.voice.value) send(P.sessionUpdate({ voice: el.voice.value }));
});
el.applyInstructions.addEventListener("click", () => applyInstructions());
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    if (radio.checked) setMode(radio.value);
  });
}

el.ptt.addEventListener("pointerdown", (e) => {
  el.ptt.setPointerCapture(e.pointerId);
  pttDown();
});
el.ptt.addEventListener("pointerup", () => pttUp());
el.ptt.addEventListener("pointercancel", () => pttUp());
el.ptt.addEventListener("keydown", (e) => {
  if ((e.key === " " || e.key === "Enter") && !e.repeat) {
    e.preventDefault();
    pttDown();
  }
});
el.ptt.addEventListener("keyup", (e) => {
  if (e.key === " " || e.key === "Enter") {
    e.preventDefault();
    pttUp();
  }
});
el.ptt.addEventListener("blur", () => pttUp());

el.typed.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = el.typedText.value.trim();
  if (!text || !S.started) return; // Send is disabled then; Enter must not lose the text

  el.typedText.value = "";
  audio.unlock();
  const go = () => {
    const id = conversation.addTyped(text);
    renderItem(id);
    send(P.responseCreate(text));
  };
  if (S.responseRunning) {
    stopReply();
    runAfterDone(go);
  } else {
    go();
  }
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !el.stop.disabled) {
    e.preventDefault();
    stopReply();
  }
});
// Browsers start audio only after a gesture: any first click or key unlocks playback.
document.addEventListener("pointerdown", () => audio.unlock(), { once: true });
document.addEventListener("keydown", () => audio.unlock(), { once: true });

restoreSettings();
// Load the player's worklet now, while the server that serves it is surely there: a
// first gesture during an outage then still finds a player to resume. (Until a
// gesture, the browser keeps the context suspended; that is fine.)
audio.ensurePlayback().catch(() => undefined);
setupKiosk();
updateReplyControls();
updateTyping();
setInterval(tick, TICK_MS);
socket.start();

// --- settings that survive a reload ----------------------------------------------------------

function restoreSettings() {
  el.speed.value = String(saved.speed);
  el.speedOut.textContent = `${saved.speed.toFixed(2)}×`;
  el.instructions.value = saved.instructions;
  if (saved.voice) ensureVoiceOption(saved.voice, true);
  audio.micDeviceId = saved.micDevice;
  audio.sinkId = saved.speakerDevice;
  // Before the socket opens: the first session.update then carries the mode.
  setMode(saved.mode, { tell: false });
  el.speakerDevice.disabled = !AudioEngine.canChooseSpeaker;
  el.speakerNote.hidden = AudioEngine.canChooseSpeaker;
}

// --- microphone and speaker choice -----------------------------------------------------------

function fillDevices(select, devices, chosen, fallback) {
  const options = [new Option("Browser default", "")];
  devices.forEach((d, i) => options.push(new Option(d.label || `${fallback} ${i + 1}`, d.deviceId)));
  select.replaceChildren(...options);
  select.value = devices.some((d) => d.deviceId === chosen) ? chosen : "";
}

/** List microphones and speakers (their names appear once the microphone is allowed). */
async function listDevices() {
  const { inputs, outputs } = await AudioEngine.devices();
  fillDevices(el.micDevice, inputs, audio.micDeviceId, "Microphone");
  fillDevices(el.speakerDevice, outputs, audio.sinkId, "Speaker");
}

async function chooseMic() {
  audio.micDeviceId = el.micDevice.value;
  saveSettings(storage, { micDevice: audio.micDeviceId });
  if (!audio.micOn) return;
  // A running microphone moves to the new device at once, keeping its mute state.
  const live = S.micLive;
  await audio.stopMic();
  try {
    await audio.startMic();
  } catch (err) {
    showError(micErrorInWords(err), "microphone");
  }
  setMicLive(live);
}

async function chooseSpeaker() {
  const id = el.speakerDevice.value;
  saveSettings(storage, { speakerDevice: id });
  if (!(await audio.setSpeaker(id))) showError("The browser refused that speaker.", "speaker");
  else clearErrors((code) => code === "speaker");
}

// --- agent state, voice visual, heard words --------------------------------------------------

function agentState() {
  if (!S.started) return "offline";
  const playing = replyPlaying() && S.currentTurn !== null && !S.flushed.has(S.currentTurn);
  if (S.paused && (S.responseRunning || playing)) return "paused";
  if (playing) return "speaking";
  if (S.responseRunning || S.transcribing) return "thinking";
  if (S.userSpeaking || S.micLive || S.pttHeld) return "listening";
  return "idle";
}

/** Show the agent's state; called on every message and control change, and each tick
 * (the player's state changes between them). */
function updateAgent() {
  const state = agentState();
  if (state === S.agent) return;
  S.agent = state;
  el.agent.dataset.state = state;
  setText(el.agentText, AGENT_WORDS[state]);
  updateTalk();
}

function tick() {
  updateAgent();
  const state = S.agent;
  S.voiceDb = state === "speaking" ? audio.voiceLevel() : -100;
  drawVoice(state === "listening" ? micDb : S.voiceDb);
  followPlayback();
}

/** Bars whose height follows the level: the assistant's voice, or the microphone's. */
function drawVoice(db) {
  const c = el.viz;
  const g = c.getContext("2d");
  if (!g) return;
  g.clearRect(0, 0, c.width, c.height);
  const level = Math.max(0, Math.min(1, (db + 60) / 60));
  const bars = 7;
  const w = c.width / bars;
  g.fillStyle = getComputedStyle(el.agent).color;
  for (let i = 0; i < bars; i++) {
    // Middle bars tallest: reads as a voice, not a meter.
    const shape = 1 - Math.abs(i - (bars - 1) / 2) / bars;
    const h = Math.max(2, c.height * level * shape);
    g.fillRect(i * w + 2, (c.height - h) / 2, w - 4, h);
  }
}

/** Move the heard-words mark of the playing reply along with the audio. */
function followPlayback() {
  const st = playStats;
  if (!st || st.turn === null || st.turn === undefined) return;
  // Offline, nothing plays on: the player's last report may still say it does.
  const id = S.started ? itemOfTurn(st.turn) : null;
  // Only the reply playing now carries a mark: a stopped one, or one the player moved
  // on from, goes back to plain text (and stops being busy for screen readers).
  for (const other of [...heardPos.keys()]) {
    if (other !== id || S.flushed.has(st.turn)) {
      heardPos.delete(other);
      renderItem(other);
    }
  }
  if (id === null || S.flushed.has(st.turn)) return;
  const item = conversation.byId.get(id);
  if (!item || item.kind !== "assistant") return;
  let played = st.turnPlayed;
  if (st.playing && !st.paused) {
    // The worklet reports a few times a second; the audio moves on in between (by at
    // most one report's worth: a stalled context must not run the mark ahead).
    const ms = Math.min(performance.now() - S.playStatsAt, STATS_GAP_MS);
    played = Math.min(played + ms * OUTPUT_SAMPLES_PER_MS, st.turnPlayed + st.queuedSamples);
  }
  const total = Math.max(item.audioSamples, st.turnPlayed + st.queuedSamples);
  if (item.status !== "in_progress" && !st.playing && st.queuedSamples === 0) {
    // All of it played: plain text again.
    if (heardPos.delete(id)) renderItem(id);
    return;
  }
  // Never backwards: a report that lands behind the estimate leaves the mark where it is.
  const pos = Math.max(heardPos.get(id) ?? 0, heardChars(item, played, total));
  if (heardPos.get(id) === pos) return;
  heardPos.set(id, pos);
  renderItem(id);
}

// --- kiosk -----------------------------------------------------------------------------------

function showCaption(item) {
  if (!KIOSK || !item) return;
  const node = item.kind === "user" ? el.captionUser : el.captionAssistant;
  setText(node, item.text || (item.kind === "user" && item.partial ? "…" : ""));
}

/** The kiosk's one control: stop the reply while there is one, else start or stop listening. */
function updateTalk() {
  if (!KIOSK) return;
  let label = "Start listening";
  if (!el.stop.disabled) label = "Stop";
  else if (audio.micOn && S.micLive) label = "Stop listening";
  setText(el.talk, label);
  el.talk.dataset.state = S.agent;
}

function onTalk() {
  audio.unlock();
  if (!el.stop.disabled) stopReply();
  else toggleMic();
}

function setupKiosk() {
  if (!KIOSK) return;
  document.body.classList.add("kiosk");
  if (params.has("settings")) document.body.classList.add("kiosk-settings");
  el.talk.hidden = false;
  el.captionUser.parentElement.removeAttribute("aria-hidden");
  // Listen at once where the browser allows it (a kiosk's Chromium is started with
  // its autoplay and microphone allowed); elsewhere the big button is the one tap.
  if (S.mode === "vad") toggleMic();
  updateTalk();
}

// --- developer log, clear, export ------------------------------------------------------------

function devlogAdd(direction, msg) {
  if (el.devlog.hidden) return; // hidden by default: costs nothing until shown
  const li = document.createElement("li");
  li.className = direction;
  li.textContent = `${direction === "sent" ? "→" : "←"} ${msg.type}`;
  li.title = JSON.stringify(msg).slice(0, 2000);
  el.devlogList.append(li);
  while (el.devlogList.children.length > DEVLOG_LIMIT) el.devlogList.firstElementChild.remove();
}

function toggleDevlog() {
  el.devlog.hidden = !el.devlog.hidden;
  setText(el.devlogToggle, el.devlog.hidden ? "Show event log" : "Hide event log");
}

/** Clear the page's view of the conversation (the server's session keeps its history). */
function clearConversation() {
  conversation.clear();
  heardPos.clear();
  el.conversation.replaceChildren();
  el.empty.hidden = false;
}

function exportConversation() {
  const data = {
    exported_at: new Date().toISOString(),
    model: S.session ? S.session.model : null,
    items: conversation.exportData(),
  };
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "bitvoice-conversation.json";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 0);
}

el.talk.addEventListener("click", () => onTalk());
el.micDevice.addEventListener("change", () => chooseMic());
el.speakerDevice.addEventListener("change", () => chooseSpeaker());
el.devlogToggle.addEventListener("click", () => toggleDevlog());
el.clear.addEventListener("click", () => clearConversation());
el.exportBtn.addEventListener("click", () => exportConversation());
if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
  navigator.mediaDevices.addEventListener("devicechange", () => listDevices());
}
