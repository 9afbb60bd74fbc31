// AudioWorklet: playback of the server's 24 kHz PCM16 through a small jitter
// buffer. Runs in an AudioContext created at 24 kHz, so no resampling here.
// Messages in: {type:"push", pcm:ArrayBuffer, turn}, {type:"end", turn},
// {type:"flush", turn, id} (drop all, accept only `turn` and later), {type:"reset"}
// (new connection), {type:"pause"}, {type:"resume"}.
// Messages out: {type:"stats", ...counters} a few times a second and at once
// after a flush ({type:"flushed", id, ...}), so the page can show and the
// tests can read how much audio really left the speaker.
import { JitterBuffer, PLAYBACK_RATE, pcm16ToFloat } from "./dsp.js";

// Hold 60 ms before starting a turn: smooths network jitter at little latency.
const PREBUFFER_SAMPLES = Math.round(0.06 * PLAYBACK_RATE);
// Cap the queue at 60 s of audio so a runaway sender cannot exhaust memory.
const MAX_QUEUED_SAMPLES = 60 * PLAYBACK_RATE;
// Report counters every 64 render quanta (about 340 ms at 24 kHz).
const STATS_EVERY = 64;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.jb = new JitterBuffer(PREBUFFER_SAMPLES, MAX_QUEUED_SAMPLES);
    this.quanta = 0;
    this.wasPlaying = false;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(msg) {
    switch (msg.type) {
      case "push":
        this.jb.push(pcm16ToFloat(msg.pcm), msg.turn);
        break;
      case "end":
        if (msg.turn === this.jb.turn) this.jb.end();
        break;
      case "flush": {
        // What was heard of the flushed turn, for `bitvoice.playback`.
        const flushedTurn = this.jb.turn;
        const flushedPlayed = this.jb.turnPlayed;
        this.jb.advanceTo(msg.turn);
        this.port.postMessage({
          type: "flushed",
          id: msg.id,
          flushedTurn,
          flushedPlayed,
          ...this.stats(),
        });
        break;
      }
      case "reset":
        this.jb.reset();
        break;
      case "pause":
        this.jb.paused = true;
        break;
      case "resume":
        this.jb.paused = false;
        break;
      default:
        break;
    }
  }

  stats() {
    const jb = this.jb;
    return {
      turn: jb.turn,
      turnPlayed: jb.turnPlayed,
      chunksPlayed: jb.chunksPlayed,
      samplesPlayed: jb.samplesPlayed,
      queuedSamples: jb.queued,
      underruns: jb.underruns,
      flushes: jb.flushes,
      droppedSamples: jb.dropped,
      paused: jb.paused,
      playing: jb.playing,
      time: currentTime,
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const first = out[0];
    const wrote = this.jb.pull(first);
    for (let c = 1; c < out.length; c++) out[c].set(first);
    const playing = wrote > 0;
    this.quanta++;
    // Report promptly when audio starts or stops, and periodically while it plays.
    if (playing !== this.wasPlaying || (playing && this.quanta % STATS_EVERY === 0)) {
      this.port.postMessage({ type: "stats", ...this.stats() });
    }
    this.wasPlaying = playing;
    return true;
  }
}

registerProcessor("bitvoice-playback", PlaybackProcessor);
