// A WebSocket that reconnects with exponential backoff and jitter.
//
// It knows nothing of the protocol: it hands text frames (parsed JSON) and
// binary frames (ArrayBuffer) to callbacks, and reports its state in words.

/** First retry delay, the cap, and the jitter fraction of the backoff. */
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 10000;
export const BACKOFF_JITTER = 0.2;

/**
 * Delay before reconnect attempt `attempt` (0-based): base * 2^attempt, capped,
 * times a random factor in [1 - jitter, 1 + jitter] so many clients that lost
 * the same server do not all return in the same millisecond.
 * @param {number} attempt
 * @param {number} [random] a number in [0, 1) (Math.random() by default)
 */
export function backoffDelay(attempt, random = Math.random()) {
  const raw = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt));
  return Math.round(raw * (1 - BACKOFF_JITTER + 2 * BACKOFF_JITTER * random));
}

/**
 * The realtime URL for a page served by bitvoice: same host, ws/wss to match
 * http/https, path /v1/realtime, and the page's `?token=` passed along.
 * @param {{protocol: string, host: string, search: string}} location
 */
export function realtimeUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = new URLSearchParams(location.search).get("token");
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}//${location.host}/v1/realtime${query}`;
}

/**
 * @typedef {"connecting"|"open"|"waiting"|"closed"} ConnState
 */

export class ReconnectingSocket {
  /**
   * @param {string} url
   * @param {{
   *   onOpen?: () => void,
   *   onJson?: (msg: any) => void,
   *   onBinary?: (buf: ArrayBuffer) => void,
   *   onState?: (state: ConnState, detail: {attempt: number, delayMs?: number,
   *              code?: number, reason?: string}) => void,
   *   WebSocketImpl?: typeof WebSocket,
   * }} handlers
   */
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.WS = handlers.WebSocketImpl || WebSocket;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
  }

  /** Open the socket (and keep reopening it after drops until `stop()`). */
  start() {
    this.stopped = false;
    this.open();
  }

  /** Close for good: no more reconnects. */
  stop() {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) this.ws.close(1000, "page closed");
    this.ws = null;
    this.emit("closed", {});
  }

  /** The connection works end to end (the server answered): later drops retry fast again. */
  markHealthy() {
    this.attempt = 0;
  }

  /** Reconnect now instead of waiting for the backoff timer. */
  retryNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= 1)) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.open();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === 1;
  }

  /**
   * Send a JSON message or a binary frame. Returns false (and sends nothing)
   * when the socket is not open: callers decide whether that matters.
   * @param {object|ArrayBuffer|ArrayBufferView} data
   */
  send(data) {
    if (!this.isOpen) return false;
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) this.ws.send(data);
    else this.ws.send(JSON.stringify(data));
    return true;
  }

  /** Bytes queued in the browser's socket buffer (to drop audio rather than queue it). */
  get bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  emit(state, detail) {
    if (this.h.onState) this.h.onState(state, { attempt: this.attempt, ...detail });
  }

  open() {
    this.emit("connecting", {});
    let ws;
    try {
      ws = new this.WS(this.url);
    } catch (err) {
      this.scheduleRetry(0, String(err));
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.emit("open", {});
      if (this.h.onOpen) this.h.onOpen();
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      if (typeof event.data === "string") {
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return; // the server only sends JSON text; ignore anything else
        }
        if (this.h.onJson) this.h.onJson(msg);
      } else if (this.h.onBinary) {
        this.h.onBinary(event.data);
      }
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      this.scheduleRetry(event.code, event.reason);
    };
    // onerror is always followed by onclose, which does the work.
    ws.onerror = () => {};
  }

  scheduleRetry(code, reason) {
    const delayMs = backoffDelay(this.attempt);
    this.emit("waiting", { delayMs, code, reason });
    this.attempt += 1;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.open();
    }, delayMs);
  }
}
