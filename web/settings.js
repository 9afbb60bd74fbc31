// The person's settings, kept across reloads in localStorage (one JSON entry).
//
// No DOM: `loadSettings(storage)` / `saveSettings(storage, values)` take any
// Storage-like object, so Node tests can check them with a Map-backed stub.

/** The localStorage key (one entry, versioned by its shape, not its name). */
export const SETTINGS_KEY = "bitvoice.settings";

/** Every setting, with the value used when none was saved (or a saved one is invalid). */
export const DEFAULT_SETTINGS = Object.freeze({
  speed: 1,
  voice: "",
  instructions: "",
  mode: "vad",
  micDevice: "",
  speakerDevice: "",
});

function valid(name, value) {
  switch (name) {
    case "speed":
      return typeof value === "number" && Number.isFinite(value) && value >= 0.5 && value <= 2;
    case "mode":
      return value === "vad" || value === "ptt";
    default:
      return typeof value === "string" && value.length <= 8000;
  }
}

/**
 * The saved settings merged over the defaults; a missing, unreadable or invalid entry
 * (another version's, a hand edit) falls back to the default for that setting only.
 * @param {{getItem: (key: string) => string|null}|null} storage
 */
export function loadSettings(storage) {
  const out = { ...DEFAULT_SETTINGS };
  let saved = null;
  try {
    saved = storage ? JSON.parse(storage.getItem(SETTINGS_KEY) || "null") : null;
  } catch {
    saved = null; // unreadable: the defaults
  }
  if (!saved || typeof saved !== "object") return out;
  for (const name of Object.keys(DEFAULT_SETTINGS)) {
    if (valid(name, saved[name])) out[name] = saved[name];
  }
  return out;
}

/**
 * Save `changes` over what is saved. Storage may be missing or full (private
 * windows): settings then last for this page only, which is not an error.
 * @param {{getItem: Function, setItem: Function}|null} storage
 * @param {Partial<typeof DEFAULT_SETTINGS>} changes
 */
export function saveSettings(storage, changes) {
  const next = { ...loadSettings(storage) };
  for (const [name, value] of Object.entries(changes)) {
    if (name in DEFAULT_SETTINGS && valid(name, value)) next[name] = value;
  }
  try {
    if (storage) storage.setItem(SETTINGS_KEY, JSON.stringify(next));
  } catch {
    // quota or a blocked storage: keep them for this page only
  }
  return next;
}
