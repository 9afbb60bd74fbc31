// Unit tests for web/dsp.js (the arithmetic the AudioWorklets run), under node --test.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CAPTURE_FRAME_SAMPLES,
  Framer,
  JitterBuffer,
  Resampler,
  floatToPcm16,
  pcm16ToFloat,
  rmsDbfs,
} from "../../../web/dsp.js";

function sine(freq, rate, n, amp = 0.5) {
  return Float32Array.from({ length: n }, (_, i) => amp * Math.sin((2 * Math.PI * freq * i) / rate));
}

// Amplitude of `freq` in `x` by correlation with sin/cos (a one-bin DFT).
function toneAmplitude(x, freq, rate) {
  let re = 0;
  let im = 0;
  for (let i = 0; i < x.length; i++) {
    re += x[i] * Math.cos((2 * Math.PI * freq * i) / rate);
    im += x[i] * Math.sin((2 * Math.PI * freq * i) / rate);
  }
  return (2 * Math.hypot(re, im)) / x.length;
}

for (const inRate of [48000, 44100, 96000, 16000, 8000]) {
  test(`resampler ${inRate} -> 16000 keeps the length and a 440 Hz tone`, () => {
    const r = new Resampler(inRate, 16000);
    const x = sine(440, inRate, inRate); // one second
    const y = r.process(x);
    // One second in gives one second out, less the filter delay (16 input samples).
    assert.ok(Math.abs(y.length - 16000) <= Math.ceil((16 * 16000) / inRate) + 1, `len ${y.length}`);
    const amp = toneAmplitude(y.subarray(200, 15800), 440, 16000);
    assert.ok(Math.abs(amp - 0.5) < 0.02, `amplitude ${amp}`);
  });
}

test("resampler removes a tone above the output Nyquist (no aliasing)", () => {
  const r = new Resampler(48000, 16000);
  // 12 kHz would alias to 4 kHz at 16 kHz without the low-pass.
  const y = r.process(sine(12000, 48000, 48000));
  const alias = toneAmplitude(y.subarray(200, 15800), 4000, 16000);
  assert.ok(alias < 0.5 * 0.01, `alias amplitude ${alias}`);
});

test("resampler output does not depend on how the input is split into blocks", () => {
  const x = sine(300, 44100, 44100 / 4);
  const whole = new Resampler(44100, 16000).process(x);
  const r = new Resampler(44100, 16000);
  const parts = [];
  for (let i = 0; i < x.length; i += 128) parts.push(...r.process(x.subarray(i, i + 128)));
  assert.equal(parts.length, whole.length);
  for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(parts[i] - whole[i]) < 1e-6, `at ${i}`);
});

test("resampler rejects bad rates", () => {
  assert.throws(() => new Resampler(0, 16000), RangeError);
  assert.throws(() => new Resampler(48000, Number.NaN), RangeError);
});

test("pcm16 round trip and clipping", () => {
  const pcm = floatToPcm16(Float32Array.from([0, 0.5, -0.5, 1, -1, 2, -2]));
  assert.deepEqual(Array.from(pcm), [0, 16384, -16384, 32767, -32768, 32767, -32768]);
  const back = pcm16ToFloat(pcm.buffer);
  assert.equal(back[1], 0.5);
  assert.equal(back[4], -1);
  // An odd trailing byte is ignored.
  assert.equal(pcm16ToFloat(new ArrayBuffer(5)).length, 2);
});

test("rms level in dBFS", () => {
  assert.equal(rmsDbfs(new Float32Array(100)), -100);
  assert.equal(rmsDbfs(new Float32Array(0)), -100);
  const full = rmsDbfs(new Float32Array(100).fill(1));
  assert.ok(Math.abs(full) < 1e-9);
  const half = rmsDbfs(new Float32Array(100).fill(0.5));
  assert.ok(Math.abs(half + 6.0206) < 1e-3);
});

test("framer cuts exact 20 ms frames across pushes and reset drops a partial frame", () => {
  const f = new Framer(CAPTURE_FRAME_SAMPLES);
  assert.equal(f.push(new Float32Array(300)).length, 0);
  const frames = f.push(new Float32Array(700).fill(0.25));
  assert.equal(frames.length, 3);
  for (const fr of frames) assert.equal(fr.length, 320);
  assert.equal(frames[0][0], 0);
  assert.equal(frames[0][319], Math.round(0.25 * 0x7fff));
  f.push(new Float32Array(40)); // fill is now 40
  f.reset();
  assert.equal(f.push(new Float32Array(319)).length, 0);
  assert.equal(f.push(new Float32Array(1)).length, 1);
});

function pullAll(jb, quanta, n = 128) {
  const out = new Float32Array(n);
  let real = 0;
  for (let q = 0; q < quanta; q++) real += jb.pull(out);
  return real;
}

test("jitter buffer waits for the prebuffer, then plays in order", () => {
  const jb = new JitterBuffer(256, 10000);
  jb.push(Float32Array.from({ length: 200 }, (_, i) => i / 1000), 0);
  const out = new Float32Array(128);
  assert.equal(jb.pull(out), 0);
  assert.ok(out.every((v) => v === 0));
  jb.push(Float32Array.from({ length: 200 }, (_, i) => (200 + i) / 1000), 0);
  assert.equal(jb.pull(out), 128);
  assert.ok(Math.abs(out[5] - 0.005) < 1e-7);
  assert.equal(jb.pull(out), 128);
  assert.ok(Math.abs(out[0] - 0.128) < 1e-7);
  assert.equal(jb.chunksPlayed, 1);
  assert.equal(jb.samplesPlayed, 256);
});

test("jitter buffer plays out a short ended turn and counts underruns only mid-turn", () => {
  const jb = new JitterBuffer(1000, 10000);
  jb.push(new Float32Array(300).fill(0.1), 1);
  assert.equal(pullAll(jb, 1), 0);
  jb.end();
  assert.equal(pullAll(jb, 3), 300);
  assert.equal(jb.underruns, 0);
  assert.equal(jb.chunksPlayed, 1);
  jb.push(new Float32Array(1000).fill(0.1), 1);
  assert.equal(pullAll(jb, 10), 1000);
  assert.equal(jb.underruns, 1);
});

test("flush drops everything at once and stale turns stay dropped", () => {
  const jb = new JitterBuffer(0, 100000);
  jb.push(new Float32Array(5000).fill(0.2), 3);
  assert.equal(pullAll(jb, 1), 128);
  jb.advanceTo(4);
  assert.equal(jb.queued, 0);
  assert.equal(pullAll(jb, 2), 0);
  jb.push(new Float32Array(500).fill(0.2), 3); // late audio of the cancelled turn
  assert.equal(jb.queued, 0);
  assert.equal(jb.dropped, 5000 - 128 + 500);
  jb.push(new Float32Array(500).fill(0.2), 4);
  assert.equal(pullAll(jb, 4), 500);
});

test("a newer turn replaces the old one (barge-in from the server)", () => {
  const jb = new JitterBuffer(0, 100000);
  jb.push(new Float32Array(1000).fill(0.2), 1);
  jb.push(new Float32Array(100).fill(0.3), 2);
  assert.equal(jb.queued, 100);
  const out = new Float32Array(128);
  jb.pull(out);
  assert.ok(Math.abs(out[0] - 0.3) < 1e-7);
});

test("pause holds the queue, resume continues where it stopped", () => {
  const jb = new JitterBuffer(0, 100000);
  jb.push(new Float32Array(512).fill(0.2), 0);
  assert.equal(pullAll(jb, 1), 128);
  jb.paused = true;
  assert.equal(pullAll(jb, 5), 0);
  assert.equal(jb.queued, 384);
  jb.paused = false;
  assert.equal(pullAll(jb, 3), 384);
});

test("the queue is capped: the oldest audio goes first", () => {
  const jb = new JitterBuffer(0, 1000);
  for (let i = 0; i < 5; i++) jb.push(new Float32Array(400).fill(i / 10), 0);
  assert.ok(jb.queued <= 1000);
  const out = new Float32Array(128);
  jb.pull(out);
  assert.ok(out[0] >= 0.25, `oldest left ${out[0]}`);
});

test("turnPlayed counts the current turn only; reset forgets the turn number", () => {
  const jb = new JitterBuffer(0, 100000);
  jb.push(new Float32Array(300).fill(0.1), 5);
  pullAll(jb, 2);
  assert.equal(jb.turnPlayed, 256);
  jb.push(new Float32Array(100).fill(0.1), 6);
  pullAll(jb, 1);
  assert.equal(jb.turnPlayed, 100);
  jb.reset();
  jb.push(new Float32Array(100).fill(0.1), 1); // a new connection counts from 1 again
  assert.equal(jb.queued, 100);
  assert.equal(jb.turnPlayed, 0);
});
