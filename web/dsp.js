// Pure audio helpers shared by the AudioWorklets and the Node unit tests.
// No DOM, no Web Audio: everything here is plain arithmetic on typed arrays,
// so `node --test tests/web/js` can exercise exactly the code the browser runs.

/** Sample rate of the PCM the client sends (the server's STT rate). */
export const CAPTURE_RATE = 16000;
/** Sample rate of the PCM the server streams back (the TTS rate). */
export const PLAYBACK_RATE = 24000;
/** Samples per outgoing frame: 20 ms at 16 kHz, 640 bytes of PCM16. */
export const CAPTURE_FRAME_SAMPLES = 320;

// Windowed-sinc low-pass used by the resampler. Taps per side and the number
// of precomputed fractional phases: 16 taps keep aliasing from 48 kHz down to
// 16 kHz under about -40 dB, 128 phases keep the phase error below 1/256 sample.
const HALF_TAPS = 16;
const PHASES = 128;

/**
 * Streaming windowed-sinc resampler for mono float audio.
 *
 * Feed any number of input blocks with `process(block)`; each call returns the
 * output samples that are now fully determined. State (history and the
 * fractional read position) carries over between calls, so splitting the input
 * into blocks of any size gives the same output as one call.
 */
export class Resampler {
  /**
   * @param {number} inRate input sample rate in Hz (> 0)
   * @param {number} outRate output sample rate in Hz (> 0)
   */
  constructor(inRate, outRate) {
    if (!(inRate > 0) || !(outRate > 0)) {
      throw new RangeError(`bad sample rates ${inRate} -> ${outRate}`);
    }
    this.inRate = inRate;
    this.outRate = outRate;
    /** Input samples advanced per output sample. */
    this.step = inRate / outRate;
    // Cut off a little below the lower Nyquist so the transition band of the
    // short filter does not fold back into speech frequencies.
    const cutoff = 0.9 * Math.min(1, outRate / inRate);
    this.table = new Float32Array(PHASES * 2 * HALF_TAPS);
    for (let p = 0; p < PHASES; p++) {
      const frac = p / PHASES;
      let sum = 0;
      for (let k = 0; k < 2 * HALF_TAPS; k++) {
        // Distance from tap k (at offset k - HALF_TAPS + 1) to the read point.
        const x = k - HALF_TAPS + 1 - frac;
        const w = 0.5 + 0.5 * Math.cos((Math.PI * x) / HALF_TAPS); // Hann window
        const s = x === 0 ? 1 : Math.sin(Math.PI * cutoff * x) / (Math.PI * cutoff * x);
        const v = Math.abs(x) >= HALF_TAPS ? 0 : cutoff * s * w;
        this.table[p * 2 * HALF_TAPS + k] = v;
        sum += v;
      }
      // Normalise each phase to unity DC gain so silence stays silent and a
      // constant stays constant whatever the phase.
      for (let k = 0; k < 2 * HALF_TAPS; k++) this.table[p * 2 * HALF_TAPS + k] /= sum;
    }
    // History holds the last 2*HALF_TAPS input samples (zeros at the start).
    this.history = new Float32Array(2 * HALF_TAPS);
    // Read position of the next output sample relative to the first sample of
    // the next input block, in input samples.
    this.pos = 0;
  }

  /**
   * Resample one block.
   * @param {Float32Array} input mono samples at `inRate`
   * @returns {Float32Array} the samples at `outRate` that this block completes
   */
  process(input) {
    const H = 2 * HALF_TAPS;
    // Work buffer: history followed by the new block; buffer index j holds
    // input sample j - H relative to the block start.
    const buf = new Float32Array(H + input.length);
    buf.set(this.history, 0);
    buf.set(input, H);
    const out = [];
    // The filter reads the H buffer samples starting at floor(t) + 1, i.e. it
    // is centred HALF_TAPS samples behind t: a fixed delay of HALF_TAPS input
    // samples (0.33 ms at 48 kHz) that lets every output use only samples
    // already received.
    let t = this.pos;
    for (;;) {
      let i = Math.floor(t);
      let phase = Math.round((t - i) * PHASES);
      if (phase === PHASES) {
        i += 1;
        phase = 0;
      }
      const base = i + 1;
      if (base + H > buf.length) break;
      const off = phase * H;
      let acc = 0;
      for (let k = 0; k < H; k++) acc += buf[base + k] * this.table[off + k];
      out.push(acc);
      t += this.step;
    }
    this.pos = t - input.length;
    this.history.set(buf.subarray(buf.length - H));
    return Float32Array.from(out);
  }
}

/**
 * Convert float samples in [-1, 1] to signed 16-bit PCM, clipping outside.
 * @param {Float32Array} input
 * @returns {Int16Array}
 */
export function floatToPcm16(input) {
  const out = new Int16Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const s = Math.max(-1, Math.min(1, input[i]));
    out[i] = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
  }
  return out;
}

/**
 * Convert signed 16-bit little-endian PCM bytes to float samples in [-1, 1).
 * An odd trailing byte is ignored (it cannot be half a sample of ours).
 * @param {ArrayBuffer} buffer
 * @returns {Float32Array}
 */
export function pcm16ToFloat(buffer) {
  const view = new DataView(buffer);
  const n = buffer.byteLength >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 0x8000;
  return out;
}

/**
 * Root-mean-square level of a block in dBFS, floored at -100.
 * @param {Float32Array} block
 * @returns {number}
 */
export function rmsDbfs(block) {
  if (block.length === 0) return -100;
  let acc = 0;
  for (let i = 0; i < block.length; i++) acc += block[i] * block[i];
  const rms = Math.sqrt(acc / block.length);
  return rms > 1e-5 ? Math.max(-100, 20 * Math.log10(rms)) : -100;
}

/**
 * Collects resampled audio into fixed-size PCM16 frames.
 * `push(samples)` returns the completed frames (each an Int16Array of
 * `frameSamples` samples); a partial frame waits for the next push.
 */
export class Framer {
  /** @param {number} frameSamples samples per frame (> 0) */
  constructor(frameSamples) {
    this.frameSamples = frameSamples;
    this.pending = new Float32Array(frameSamples);
    this.fill = 0;
  }

  /**
   * @param {Float32Array} samples
   * @returns {Int16Array[]}
   */
  push(samples) {
    const frames = [];
    let i = 0;
    while (i < samples.length) {
      const n = Math.min(this.frameSamples - this.fill, samples.length - i);
      this.pending.set(samples.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.fill === this.frameSamples) {
        frames.push(floatToPcm16(this.pending));
        this.fill = 0;
      }
    }
    return frames;
  }

  /** Drop a partial frame (on mute, so stale audio never leaks into the next utterance). */
  reset() {
    this.fill = 0;
  }
}

/**
 * Playback jitter buffer: a queue of float chunks tagged with a turn id.
 *
 * It holds back output until `prebufferSamples` are queued (or the turn is
 * marked ended), then plays continuously; on underrun it emits silence and
 * buffers up again. `flush()` drops everything at once (barge-in, stop).
 * `pull(out)` fills one render quantum and never allocates.
 */
export class JitterBuffer {
  /**
   * @param {number} prebufferSamples samples to hold before starting (>= 0)
   * @param {number} maxSamples cap on queued samples; older audio is dropped beyond it
   */
  constructor(prebufferSamples, maxSamples) {
    this.prebufferSamples = prebufferSamples;
    this.maxSamples = maxSamples;
    /** @type {{samples: Float32Array, turn: number}[]} */
    this.chunks = [];
    this.offset = 0; // read offset in chunks[0]
    this.queued = 0;
    this.playing = false;
    this.ended = false; // the current turn will send no more audio
    this.paused = false;
    this.turn = -1; // turn of the audio now accepted; older pushes are dropped
    this.turnPlayed = 0; // samples of `turn` played so far (for `bitvoice.playback`)
    // Counters read by the UI and by the browser tests.
    this.chunksPlayed = 0;
    this.samplesPlayed = 0;
    this.underruns = 0;
    this.flushes = 0;
    this.dropped = 0;
  }

  /**
   * Queue one chunk for `turn`. A chunk from an older turn than the newest
   * seen is dropped (it was cancelled); a newer turn flushes the old one.
   * @param {Float32Array} samples
   * @param {number} turn
   */
  push(samples, turn) {
    if (turn < this.turn) {
      this.dropped += samples.length;
      return;
    }
    if (turn > this.turn) {
      this.flush();
      this.turn = turn;
      this.turnPlayed = 0;
    }
    if (samples.length === 0) return;
    this.chunks.push({ samples, turn });
    this.queued += samples.length;
    this.ended = false;
    while (this.queued > this.maxSamples && this.chunks.length > 1) {
      const head = this.chunks.shift();
      const left = head.samples.length - this.offset;
      this.queued -= left;
      this.dropped += left;
      this.offset = 0;
    }
  }

  /** The current turn sends no more audio: play out what is left, even below prebuffer. */
  end() {
    this.ended = true;
  }

  /** Drop all queued audio now. Later pushes for the same or an older turn are dropped too. */
  flush() {
    if (this.queued > 0) this.dropped += this.queued;
    this.chunks = [];
    this.offset = 0;
    this.queued = 0;
    this.playing = false;
    this.ended = false;
    this.flushes++;
  }

  /**
   * Forget the current turn and accept `turn` (and later) from now on; the
   * queue is flushed. Used on stop: the next push for `turn - 1` is dropped.
   * @param {number} turn
   */
  advanceTo(turn) {
    this.flush();
    if (turn > this.turn) {
      this.turn = turn;
      this.turnPlayed = 0;
    }
  }

  /** A new connection: turn numbers start again, so forget the turn as well as the audio. */
  reset() {
    this.flush();
    this.turn = -1;
    this.turnPlayed = 0;
    this.paused = false;
  }

  /**
   * Fill `out` with the next samples (silence while prebuffering, paused or empty).
   * @param {Float32Array} out
   * @returns {number} the number of real (non-padding) samples written
   */
  pull(out) {
    if (this.paused) {
      out.fill(0);
      return 0;
    }
    if (!this.playing) {
      if (this.queued > 0 && (this.queued >= this.prebufferSamples || this.ended)) {
        this.playing = true;
      } else {
        out.fill(0);
        return 0;
      }
    }
    let w = 0;
    while (w < out.length && this.chunks.length > 0) {
      const head = this.chunks[0].samples;
      const n = Math.min(out.length - w, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), w);
      w += n;
      this.offset += n;
      this.queued -= n;
      if (this.offset === head.length) {
        this.chunks.shift();
        this.offset = 0;
        this.chunksPlayed++;
      }
    }
    this.samplesPlayed += w;
    this.turnPlayed += w;
    if (w < out.length) {
      out.fill(0, w);
      // Ran dry: an underrun if the turn is still streaming, the natural end otherwise.
      if (!this.ended) this.underruns++;
      this.playing = false;
    }
    return w;
  }
}
