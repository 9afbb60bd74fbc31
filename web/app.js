// The bitvoice page: wires the socket, the audio engine and the conversation
// view together. Protocol names and message shapes live in protocol.js.

import { AudioEngine } from "./audio.js";
import { ReconnectingSocket, realtimeUrl } from "./connection.js";
import { Conversation, metricsInWords, reasonInWords } from "./conversation.js";
import * as P from "./protocol.js";

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

const $ = (id) => document.getElementById(id);

const el = {
  conn: $("conn"),
  connText: $("conn-text"),
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
  currentTurn: null, // number of the response now running or playing
  responseRunning: false,
  flushed: new Set(), // response numbers the page must not play any more
  framesSent: 0,
  framesReceived: 0,
  framesDropped: 0,
  rttMs: null,
  voices: [],
  afterDone: [], // actions waiting for the running response to end
};

const conversation = new Conversation();
const sentLog = [];
const receivedLog = [];
let playStats = null;
let lastStop = null;

function logPush(log, entry) {
  log.push(entry);
  if (log.length > LOG_LIMIT) log.splice(0, log.length - LOG_LIMIT);
}

const audio = new AudioEngine({
  onFrame: (pcm) => sendMicFrame(pcm),
  onLevel: (dbfs) => showLevel(dbfs),
  onStats: (stats) => {
    playStats = stats;
    updateReplyControls();
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
};

// --- sending ---------------------------------------------------------------------------------

function send(msg) {
  const ok = socket.send(msg);
  if (ok) logPush(sentLog, { ...msg, t: performance.now() });
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
  if (el.voice.value) opts.voice = el.voice.value;
  const instructions = el.instructions.value.trim();
  if (instructions) opts.instructions = instructions;
  return opts;
}

// --- connection ------------------------------------------------------------------------------

function onConnState(state, detail) {
  S.connState = state;
  el.conn.dataset.state = state;
  el.retry.hidden = state !== "waiting";
  if (state === "connecting") {
    el.connText.textContent = detail.attempt > 0 ? "Reconnecting…" : "Connecting…";
  } else if (state === "open") {
    el.connText.textContent = "Connected, starting session…";
  } else if (state === "waiting") {
    retryAt = performance.now() + detail.delayMs;
    retryWhy = closeInWords(detail.code, detail.reason);
    showRetryCountdown();
    onDisconnected();
  } else {
    el.connText.textContent = "Disconnected.";
    onDisconnected();
  }
}

let retryAt = 0;
let retryWhy = "";

function showRetryCountdown() {
  if (S.connState !== "waiting") return;
  const secs = Math.max(1, Math.ceil((retryAt - performance.now()) / 1000));
  el.connText.textContent = `${retryWhy} Retrying in ${secs} s.`;
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
  updateReplyControls();
}

// --- server messages -------------------------------------------------------------------------

function onServerMessage(msg) {
  logPush(receivedLog, { type: msg.type, t: performance.now(), msg });
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
      setReplyState("Listening…");
      break;
    case "input_audio_buffer.speech_stopped":
      setReplyState("Transcribing…");
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
    case "bitvoice.audio.flush": {
      const turn = P.turnOfResponseId(msg.response_id);
      if (turn !== null) {
        S.flushed.add(turn);
        audio.flush(turn);
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
      if (msg.metrics) showLastMetrics(msg.metrics);
      setReplyState(
        msg.response.status === "completed"
          ? "Idle"
          : `Reply ${reasonInWords(msg.response.status, msg.response.reason)}.`,
      );
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
  S.currentTurn = null;
  S.responseRunning = false;
  S.flushed.clear();
  audio.reset();
  if (reconnected && conversation.items.length > 0) addDivider("Reconnected: a new session starts here.");
  conversation.clear();
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
  const rtt = S.rttMs !== null ? ` · ${Math.round(S.rttMs)} ms round trip` : "";
  el.connText.textContent = S.started ? `Connected${model}${rtt}` : "Connected, starting session…";
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

/** Stop the reply now: silence locally first, then tell the server. */
async function stopReply() {
  const clickAt = performance.now();
  const turn = S.currentTurn;
  if (turn === null) return;
  S.flushed.add(turn);
  const ack = await audio.flush(turn);
  lastStop = {
    turn,
    clickAt,
    flushedAt: performance.now(),
    acked: ack !== null,
    samplesPlayedAtFlush: ack ? ack.samplesPlayed : null,
  };
  if (S.responseRunning) {
    // Tell the server what was really heard before cancelling, so the history keeps that.
    if (ack && ack.flushedTurn === turn) {
      send(P.playback(P.responseIdFor(turn), ack.flushedPlayed));
    }
    send(P.responseCancel());
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
    audio.resume();
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
      return;
    }
    el.mic.disabled = false;
    setMicLive(S.mode === "vad");
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
  el.mic.setAttribute("aria-pressed", String(S.micLive));
  el.mic.classList.toggle("primary", !audio.micOn);
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

function setMode(mode) {
  if (mode === S.mode) return;
  S.mode = mode;
  const ptt = mode === "ptt";
  el.ptt.hidden = !ptt;
  el.pttHelp.hidden = !ptt;
  if (ptt) S.micLive = false;
  else if (audio.micOn) S.micLive = true;
  setMicLive(S.micLive);
  send(P.sessionUpdate({ vad: !ptt }));
}

function showLevel(dbfs) {
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
  if (speedTimer !== null) clearTimeout(speedTimer);
  speedTimer = setTimeout(() => {
    speedTimer = null;
    send(P.setSpeed(v));
  }, SPEED_DEBOUNCE_MS);
}

function applyInstructions() {
  const text = el.instructions.value.trim();
  pendingInstructions = text;
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
  if (session.voice) ensureVoiceOption(session.voice, el.voice.value === "");
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

function setReplyState(text) {
  el.replyState.textContent = text;
}

function updateReplyControls() {
  const playing = playStats !== null && (playStats.queuedSamples > 0 || playStats.playing);
  const canStop = S.responseRunning || (playing && S.currentTurn !== null && !S.flushed.has(S.currentTurn));
  el.stop.disabled = !canStop;
  el.pause.setAttribute("aria-pressed", String(S.paused));
  el.pause.textContent = S.paused ? "Resume" : "Pause";
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
  const item = conversation.byId.get(id);
  let li = el.conversation.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (!item) {
    if (li) li.remove();
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
  // Screen readers announce the reply once it is complete, not every streamed word.
  li.setAttribute("aria-busy", String(streaming));
  const body = span("body", "");
  if (item.heardText !== null && item.text.startsWith(item.heardText)) {
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
  const box = document.createElement("div");
  box.className = "error";
  box.dataset.code = code || "";
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
  if (!text) return;
  audio.unlock();
  el.typedText.value = "";
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

updateReplyControls();
socket.start();
