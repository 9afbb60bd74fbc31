// web/settings.js: what survives a reload, and what a bad saved entry falls back to.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_SETTINGS, SETTINGS_KEY, loadSettings, saveSettings } from "../../../web/settings.js";

function memoryStorage(initial = {}) {
  const data = new Map(Object.entries(initial));
  return {
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => data.set(k, String(v)),
    data,
  };
}

test("nothing saved: the defaults", () => {
  assert.deepEqual(loadSettings(memoryStorage()), { ...DEFAULT_SETTINGS });
  assert.deepEqual(loadSettings(null), { ...DEFAULT_SETTINGS });
});

test("saved settings come back, merged over what was saved before", () => {
  const store = memoryStorage();
  saveSettings(store, { speed: 1.25, mode: "ptt" });
  saveSettings(store, { instructions: "Be brief.", voice: "alba", micDevice: "abc" });
  assert.deepEqual(loadSettings(store), {
    speed: 1.25,
    voice: "alba",
    instructions: "Be brief.",
    mode: "ptt",
    micDevice: "abc",
    speakerDevice: "",
  });
});

test("an invalid or unreadable entry falls back per setting", () => {
  const bad = memoryStorage({
    [SETTINGS_KEY]: JSON.stringify({ speed: 9, mode: "shout", voice: 3, instructions: "ok" }),
  });
  const got = loadSettings(bad);
  assert.equal(got.speed, DEFAULT_SETTINGS.speed);
  assert.equal(got.mode, "vad");
  assert.equal(got.voice, "");
  assert.equal(got.instructions, "ok");
  assert.deepEqual(loadSettings(memoryStorage({ [SETTINGS_KEY]: "{not json" })), {
    ...DEFAULT_SETTINGS,
  });
});

test("unknown names and invalid values are not saved; a full storage is no error", () => {
  const store = memoryStorage();
  saveSettings(store, { speed: "fast", colour: "red" });
  assert.deepEqual(JSON.parse(store.data.get(SETTINGS_KEY)), { ...DEFAULT_SETTINGS });
  const full = { getItem: () => null, setItem: () => { throw new Error("QuotaExceededError"); } };
  assert.equal(saveSettings(full, { speed: 1.5 }).speed, 1.5);
});
