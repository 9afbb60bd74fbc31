// Microphone capture and reply playback, each through its own AudioWorklet.
//
// Capture runs in a context at the device's rate (Firefox cannot connect a
// microphone to a context of another rate) and the worklet resamples to
// 16 kHz. Playback runs in a context created at 24 kHz, the server's rate, so
// the browser does the one resampling to the device on output.

import { OUTPUT_RATE } from "./protocol.js";

/** How long `flush()` waits for the worklet's acknowledgement before giving up. */
const FLUSH_ACK_TIMEOUT_MS = 50;
/** How long `startMic()` waits for the capture context to run: without a user
 * gesture a browser may hold it suspended, and the first gesture (`unlock`) resumes it. */
const RESUME_WAIT_MS = 1000;
/** Samples the voice-level analyser looks at (about 43 ms at 24 kHz). */
const ANALYSER_SIZE = 1024;

export class AudioEngine {
  /**
   * @param {{onFrame: (pcm: ArrayBuffer) => void, onLevel: (dbfs: number) => void,
   *          onStats: (stats: object) => void}} handlers
   */
  constructor(handlers) {
    this.h = handlers;
    this.captureCtx = null;
    this.stream = null;
    this.captureNode = null;
    this.playCtx = null;
    this.playNode = null;
    this.playReady = null;
    this.muted = true;
    this.flushSeq = 0;
    this.flushWaiters = new Map();
    this.stats = null;
    this.analyser = null;
    this.levelBuf = null;
    /** deviceId of the microphone to open ("" = the browser's default). */
    this.micDeviceId = "";
    /** deviceId of the speaker ("" = the browser's default); applied with setSinkId. */
    this.sinkId = "";
  }

  /** Whether this browser can send a page's audio to a chosen speaker. */
  static get canChooseSpeaker() {
    return typeof AudioContext !== "undefined" && "setSinkId" in AudioContext.prototype;
  }

  /**
   * The audio devices the browser lists (labels are empty until the microphone was allowed).
   * @returns {Promise<{inputs: MediaDeviceInfo[], outputs: MediaDeviceInfo[]}>}
   */
  static async devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
      return { inputs: [], outputs: [] };
    }
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      inputs: all.filter((d) => d.kind === "audioinput" && d.deviceId),
      outputs: all.filter((d) => d.kind === "audiooutput" && d.deviceId),
    };
  }

  /**
   * Play replies on speaker `deviceId` ("" = default). Resolves false when the browser
   * cannot choose (or refuses that device); playback then stays where it was.
   * @param {string} deviceId
   */
  async setSpeaker(deviceId) {
    this.sinkId = deviceId;
    if (!AudioEngine.canChooseSpeaker) return false;
    try {
      await this.ensurePlayback();
      await this.playCtx.setSinkId(deviceId);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The assistant's voice level right now, in dBFS (-100 when silent or not playing),
   * measured after the playback worklet, i.e. what leaves the speaker.
   */
  voiceLevel() {
    if (!this.analyser) return -100;
    this.analyser.getFloatTimeDomainData(this.levelBuf);
    let sum = 0;
    for (const v of this.levelBuf) sum += v * v;
    const rms = Math.sqrt(sum / this.levelBuf.length);
    return rms > 0 ? Math.max(-100, 20 * Math.log10(rms)) : -100;
  }

  get micOn() {
    return this.stream !== null;
  }

  /**
   * Ask for the microphone and start capturing (muted until `setMuted(false)`).
   * Must run from a user gesture (browsers require one for audio).
   * @throws {DOMException} NotAllowedError / NotFoundError from getUserMedia
   */
  async startMic() {
    if (this.stream) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this browser cannot capture audio here (a secure origin is needed)");
    }
    const audio = {
      echoCancellation: true,
      noiseSuppression: true,
      autoGainControl: true,
      channelCount: 1,
    };
    let stream;
    try {
      const chosen = this.micDeviceId ? { deviceId: { exact: this.micDeviceId } } : {};
      stream = await navigator.mediaDevices.getUserMedia({ audio: { ...audio, ...chosen } });
    } catch (err) {
      // A remembered device that is gone (unplugged): the default one, not no microphone.
      if (!this.micDeviceId || !["OverconstrainedError", "NotFoundError"].includes(err.name)) {
        throw err;
      }
      this.micDeviceId = "";
      stream = await navigator.mediaDevices.getUserMedia({ audio });
    }
    const ctx = new AudioContext({ latencyHint: "interactive" });
    try {
      await ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
      const node = new AudioWorkletNode(ctx, "bitvoice-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
      });
      node.port.onmessage = (event) => {
        const msg = event.data;
        if (msg.type === "frame") this.h.onFrame(msg.pcm);
        if (msg.type === "frame" || msg.type === "level") this.h.onLevel(msg.level);
      };
      node.port.postMessage({ type: "mute", muted: this.muted });
      // The worklet writes nothing to its output; a silent gain to the
      // destination keeps the graph pulled in every browser.
      const sink = new GainNode(ctx, { gain: 0 });
      ctx.createMediaStreamSource(stream).connect(node).connect(sink).connect(ctx.destination);
      await Promise.race([ctx.resume(), new Promise((r) => setTimeout(r, RESUME_WAIT_MS))]);
      this.captureCtx = ctx;
      this.captureNode = node;
      this.stream = stream;
    } catch (err) {
      for (const t of stream.getTracks()) t.stop();
      await ctx.close();
      throw err;
    }
  }

  /** Stop the microphone (the browser's recording indicator goes off). */
  async stopMic() {
    if (!this.stream) return;
    for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
    this.captureNode = null;
    const ctx = this.captureCtx;
    this.captureCtx = null;
    if (ctx) await ctx.close();
    this.h.onLevel(-100);
  }

  /** Muted: the worklet still measures the level but posts no frames. */
  setMuted(muted) {
    this.muted = muted;
    if (this.captureNode) this.captureNode.port.postMessage({ type: "mute", muted });
  }

  /** The capture context's rate (for display), or null. */
  get captureRate() {
    return this.captureCtx ? this.captureCtx.sampleRate : null;
  }

  /**
   * Create (once) and resume the playback context. Call from a user gesture;
   * before one, browsers keep the context suspended.
   */
  ensurePlayback() {
    if (!this.playReady) {
      const ready = (async () => {
        const ctx = new AudioContext({ sampleRate: OUTPUT_RATE, latencyHint: "interactive" });
        await ctx.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url));
        const node = new AudioWorkletNode(ctx, "bitvoice-playback", {
          numberOfInputs: 0,
          numberOfOutputs: 1,
          outputChannelCount: [1],
        });
        node.port.onmessage = (event) => this.onPlaybackMessage(event.data);
        // The analyser only measures (the voice visual); it passes the audio through.
        const analyser = new AnalyserNode(ctx, { fftSize: ANALYSER_SIZE });
        node.connect(analyser).connect(ctx.destination);
        this.analyser = analyser;
        this.levelBuf = new Float32Array(ANALYSER_SIZE);
        if (this.sinkId && AudioEngine.canChooseSpeaker) {
          await ctx.setSinkId(this.sinkId).catch(() => undefined);
        }
        this.playCtx = ctx;
        this.playNode = node;
        return node;
      })();
      // The worklet comes from the server: while it is unreachable the load fails. The
      // next call tries again instead of keeping a player that can never start.
      ready.catch(() => {
        if (this.playReady === ready) this.playReady = null;
      });
      this.playReady = ready;
    }
    if (this.playCtx && this.playCtx.state === "suspended") this.playCtx.resume();
    return this.playReady;
  }

  /** Resume the playback context after a user gesture (autoplay rules). */
  unlock() {
    if (this.captureCtx && this.captureCtx.state === "suspended") this.captureCtx.resume();
    this.ensurePlayback()
      .then(() => {
        if (this.playCtx && this.playCtx.state !== "running") return this.playCtx.resume();
        return undefined;
      })
      .catch(() => undefined); // no player yet (server unreachable): the next gesture retries
  }

  onPlaybackMessage(msg) {
    if (msg.type === "stats" || msg.type === "flushed") {
      this.stats = msg;
      this.h.onStats(msg);
    }
    if (msg.type === "flushed") {
      const resolve = this.flushWaiters.get(msg.id);
      if (resolve) {
        this.flushWaiters.delete(msg.id);
        resolve(msg);
      }
    }
  }

  post(msg, transfer) {
    if (this.playNode) this.playNode.port.postMessage(msg, transfer || []);
    // With no player (its worklet could not load) there is nothing to play or flush.
    else {
      this.ensurePlayback()
        .then((node) => node.port.postMessage(msg, transfer || []))
        .catch(() => undefined);
    }
  }

  /** Queue reply PCM (16-bit LE, 24 kHz) of response number `turn`. */
  push(turn, pcm) {
    this.post({ type: "push", turn, pcm }, [pcm]);
  }

  /** Response `turn` sends no more audio: play out what is queued. */
  end(turn) {
    this.post({ type: "end", turn });
  }

  /**
   * Stop playing now and drop everything queued; afterwards only audio of a
   * turn after `turn` is accepted. Resolves with the worklet's counters once it
   * has flushed (one render quantum, a few ms), or null after 50 ms.
   * @param {number} turn
   */
  flush(turn) {
    this.flushSeq += 1;
    const id = this.flushSeq;
    const acked = new Promise((resolve) => {
      this.flushWaiters.set(id, resolve);
      setTimeout(() => {
        if (this.flushWaiters.delete(id)) resolve(null);
      }, FLUSH_ACK_TIMEOUT_MS);
    });
    this.post({ type: "flush", turn: turn + 1, id });
    return acked;
  }

  /** A new connection: response numbers restart, so forget the old turn entirely. */
  reset() {
    this.post({ type: "reset" });
  }

  pause() {
    this.post({ type: "pause" });
  }

  resume() {
    this.post({ type: "resume" });
  }
}
