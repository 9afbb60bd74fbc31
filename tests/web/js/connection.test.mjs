// Unit tests for the pure parts of web/connection.js (backoff and URL), under node --test.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BACKOFF_BASE_MS,
  BACKOFF_JITTER,
  BACKOFF_MAX_MS,
  backoffDelay,
  realtimeUrl,
} from "../../../web/connection.js";

test("backoff doubles from the base, is capped, and jitters within bounds", () => {
  assert.equal(backoffDelay(0, 0.5), BACKOFF_BASE_MS);
  assert.equal(backoffDelay(1, 0.5), 2 * BACKOFF_BASE_MS);
  assert.equal(backoffDelay(3, 0.5), 8 * BACKOFF_BASE_MS);
  assert.equal(backoffDelay(30, 0.5), BACKOFF_MAX_MS);
  assert.equal(backoffDelay(0, 0), Math.round(BACKOFF_BASE_MS * (1 - BACKOFF_JITTER)));
  assert.ok(backoffDelay(0, 0.999999) <= Math.round(BACKOFF_BASE_MS * (1 + BACKOFF_JITTER)));
  assert.equal(backoffDelay(-4, 0.5), BACKOFF_BASE_MS);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(50);
    assert.ok(d >= BACKOFF_MAX_MS * (1 - BACKOFF_JITTER) && d <= BACKOFF_MAX_MS * (1 + BACKOFF_JITTER));
  }
});

test("realtime URL follows the page: scheme, host, token", () => {
  assert.equal(
    realtimeUrl({ protocol: "http:", host: "127.0.0.1:8000", search: "" }),
    "ws://127.0.0.1:8000/v1/realtime",
  );
  assert.equal(
    realtimeUrl({ protocol: "https:", host: "box.local", search: "?token=a b&x=1" }),
    "wss://box.local/v1/realtime?token=a%20b",
  );
});
