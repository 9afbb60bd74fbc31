// AudioWorklet: microphone capture. Resamples the context's rate to 16 kHz,
// cuts 20 ms PCM16 frames and posts each to the main thread (transferred, not
// copied), with the frame's level for the meter. Muted: posts levels only.
import { CAPTURE_FRAME_SAMPLES, CAPTURE_RATE, Framer, Resampler, rmsDbfs } from "./dsp.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    // `sampleRate` is the AudioWorkletGlobalScope's context rate.
    this.resampler = new Resampler(sampleRate, CAPTURE_RATE);
    this.framer = new Framer(CAPTURE_FRAME_SAMPLES);
    this.muted = true;
    this.framesSent = 0;
    this.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "mute") {
        this.muted = Boolean(msg.muted);
        // A partial frame from before the mute must not prefix the next utterance.
        this.framer.reset();
      }
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || input[0].length === 0) return true;
    // Downmix to mono: the STT wants one channel.
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(input[0].length);
      for (let c = 0; c < input.length; c++) {
        const ch = input[c];
        for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / input.length;
      }
    }
    const resampled = this.resampler.process(mono);
    const frames = this.framer.push(resampled);
    for (const frame of frames) {
      const level = rmsDbfs(Float32Array.from(frame, (v) => v / 0x8000));
      if (this.muted) {
        this.port.postMessage({ type: "level", level });
      } else {
        this.framesSent++;
        this.port.postMessage({ type: "frame", pcm: frame.buffer, level, seq: this.framesSent }, [
          frame.buffer,
        ]);
      }
    }
    return true;
  }
}

registerProcessor("bitvoice-capture", CaptureProcessor);
