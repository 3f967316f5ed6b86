// wxcard.js: the wxcardd control protocol from a browser, over the daemon's loopback
// WebSocket ([control.web], docs/protocol.md "From a browser").
//
// One ES module, no build step, no dependencies:
//
//   import { WxCard } from "./wxcard.js";
//   const wx = new WxCard({ url: "ws://127.0.0.1:8766/", token });
//   wx.onState((state, detail) => ...);
//   wx.subscribe((event) => ...);            // re-subscribed after every reconnect
//   wx.connect();
//   const found = await wx.request("lookup", { wx_code: "812345678901234567" });
//
// Money (`balance`, `discount`, `points`) is kept as the exact text the backend sent
// ("128.50"), never turned into a float: see parseMessage.
//
// SPDX-License-Identifier: MIT OR Apache-2.0

/** The protocol major version this client speaks. */
export const PROTO_MAJOR = 1;

/** The subprotocol the daemon selects; the token travels as a second one. */
export const SUBPROTOCOL = "wxcard.v1";
const TOKEN_PREFIX = "wxcard.token.";

/**
 * A decimal amount exactly as the backend sent it, e.g. "128.50". Parse it with a decimal
 * library if you compute with it; never with parseFloat.
 * @typedef {string} Money
 */

/**
 * The first message on every connection.
 * @typedef {object} VersionMessage
 * @property {"VERSION"} class
 * @property {string} release
 * @property {number} proto_major
 * @property {number} proto_minor
 */

/**
 * @typedef {object} ResultMessage
 * @property {"RESULT"} class
 * @property {string|number|null} id
 * @property {object} result
 */

/**
 * @typedef {"malformed"|"too_long"|"unknown_command"|"bad_params"|"forbidden"|"shutting_down"|"failed"|"overrun"} ErrorCode
 */

/**
 * @typedef {object} ErrorMessage
 * @property {"ERROR"} class
 * @property {string|number|null} id null for errors not tied to a request (forbidden, overrun)
 * @property {{code: ErrorCode, message: string}} error
 */

/**
 * A member card as the API returns it (field names as in the vendor spec).
 * @typedef {object} Card
 * @property {string} [cardCode]
 * @property {Money} [balance]
 * @property {Money} [discount]
 * @property {Money} [points]
 * @property {boolean} [canMemberPrice]
 */

/**
 * The answer to `lookup`, and the body of a `card` event.
 * @typedef {object} LookupResult
 * @property {string} wx_code
 * @property {"api"|"cache"} source
 * @property {number} age_ms
 * @property {boolean} stale
 * @property {"card"|"card_state"|"rejected"|"offline"} outcome
 * @property {Card} [card] when outcome is "card"
 * @property {number} [status] when outcome is "card_state" or "rejected"
 * @property {string} [meaning]
 * @property {string} [message]
 * @property {string} [reason] when outcome is "offline"
 */

/**
 * The answer to `activate`, `create` and `issue`.
 * @typedef {object} WriteResult
 * @property {"delivered"|"queued"|"rejected"} outcome
 * @property {number} [entry] the outbox entry when queued
 * @property {{wxCardId?: string, cardCode?: string, balance?: Money, points?: Money}} [created]
 * @property {number} [status]
 * @property {string} [message]
 */

/**
 * The answer to `scan`: a LookupResult for a member code, or this when nothing was looked up.
 * @typedef {object} ScanNotLookedUp
 * @property {string} code
 * @property {"merchant_card_number"|"other"} kind
 * @property {false} looked_up
 * @property {string} [reason]
 */

/** @typedef {{event: "scanner", scanner: string, state: "connected"|"disconnected", reason: string|null}} ScannerEvent */
/** @typedef {{event: "scan", scanner: string, code: string, symbology: string|null, kind: "wechat_member_code"|"merchant_card_number"|"other"}} ScanEvent */
/** @typedef {{event: "scan_rejected", scanner: string, reason: string}} ScanRejectedEvent */
/** @typedef {{event: "card"} & LookupResult} CardEvent */
/** @typedef {{event: "backend", kind: "online"|"offline", offline_for_ms?: number}} BackendEvent */
/** @typedef {{event: "outbox", kind: "delivered"|"dead_lettered", entry: number, endpoint: string, status?: number, message?: string}} OutboxEvent */

/**
 * An EVENT message (after subscribe). Clients ignore fields and events they do not know.
 * @typedef {{class: "EVENT"} & (ScannerEvent|ScanEvent|ScanRejectedEvent|CardEvent|BackendEvent|OutboxEvent)} EventMessage
 */

/** @typedef {VersionMessage|ResultMessage|ErrorMessage|EventMessage} ServerMessage */

/**
 * The commands and their parameters (docs/protocol.md).
 * @typedef {"lookup"|"activate"|"create"|"issue"|"paycode_show"|"paycode_clear"|"display_message"|"display_idle"|"scan"|"status"|"outbox_list"|"outbox_retry"|"outbox_drop"} CommandName
 */

/**
 * The connection's state, as given to onState handlers: "connecting", "open" (VERSION
 * received), "closed" (will reconnect), "refused" (the daemon said forbidden: wrong token
 * or origin; it keeps retrying slowly), "stopped" (close() was called, or a major version
 * this client does not speak).
 * @typedef {"connecting"|"open"|"closed"|"refused"|"stopped"} ConnectionState
 */

/** An ERROR answer, a timeout or a lost connection. */
export class WxCardError extends Error {
  /**
   * @param {ErrorCode|"timeout"|"disconnected"|"not_connected"} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "WxCardError";
    /** @type {ErrorCode|"timeout"|"disconnected"|"not_connected"} */
    this.code = code;
  }
}

// `"balance": 128.50` -> `"balance": "128.50"` before JSON.parse, so the digits survive.
// This cannot touch text inside a JSON string: there a quote is always escaped (\"), so
// `"balance"` followed by `:` and a number only occurs as a real key.
const MONEY = /"(balance|discount|points)"(\s*):(\s*)(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

/**
 * Parses one frame's text, keeping money as strings.
 * @param {string} text
 * @returns {ServerMessage}
 */
export function parseMessage(text) {
  return JSON.parse(text.replace(MONEY, '"$1"$2:$3"$4"'));
}

/**
 * @typedef {object} WxCardOptions
 * @property {string} url e.g. "ws://127.0.0.1:8766/"
 * @property {string} token the contents of the daemon's control.web.token_file
 * @property {number} [timeoutMs] per request, default 10000
 * @property {number} [backoffMinMs] first reconnect delay, default 250
 * @property {number} [backoffMaxMs] longest reconnect delay, default 10000
 */

export class WxCard {
  /** @param {WxCardOptions} options */
  constructor(options) {
    this.url = options.url;
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 10000;
    this.backoffMinMs = options.backoffMinMs ?? 250;
    this.backoffMaxMs = options.backoffMaxMs ?? 10000;
    /** @type {WebSocket|null} */
    this.ws = null;
    /** @type {VersionMessage|null} */
    this.version = null;
    /** @type {ConnectionState} */
    this.state = "closed";
    this.nextId = 1;
    this.attempt = 0;
    this.stopped = true;
    this.timer = null;
    /** @type {Map<number, {resolve: (r: object) => void, reject: (e: WxCardError) => void, timer: any}>} */
    this.pending = new Map();
    /** @type {Set<(event: EventMessage) => void>} */
    this.eventHandlers = new Set();
    /** @type {Set<(state: ConnectionState, detail: string) => void>} */
    this.stateHandlers = new Set();
  }

  /** Opens the connection; it is kept open (reconnecting with backoff) until close(). */
  connect() {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  /** Closes for good: no reconnect; pending requests fail with "disconnected". */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "client closed");
    this.failPending("the client closed the connection");
    this.setState("stopped", "closed by the client");
  }

  /**
   * Calls `handler` on every state change.
   * @param {(state: ConnectionState, detail: string) => void} handler
   * @returns {() => void} unregisters the handler
   */
  onState(handler) {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }

  /**
   * Receives events (scans, cards, scanners, backend, outbox) from now on, and again after
   * every reconnect.
   * @param {(event: EventMessage) => void} handler
   * @returns {() => void} unregisters the handler (the connection stays subscribed)
   */
  subscribe(handler) {
    const first = this.eventHandlers.size === 0;
    this.eventHandlers.add(handler);
    if (first && this.state === "open") this.sendSubscribe();
    return () => this.eventHandlers.delete(handler);
  }

  /**
   * Sends one request; resolves with its RESULT's `result`, rejects with a WxCardError for an
   * ERROR answer, a timeout or a lost connection. Requests are not resent after a reconnect
   * (a write may have been carried out): the caller decides.
   * @param {CommandName} cmd
   * @param {object} [params] the command's parameters (docs/protocol.md)
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<any>} LookupResult, WriteResult, ScanNotLookedUp, ... by command
   */
  request(cmd, params = {}, options = {}) {
    if (this.state !== "open" || !this.ws) {
      return Promise.reject(new WxCardError("not_connected", `not connected to wxcardd (${this.state})`));
    }
    const id = this.nextId++;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new WxCardError("timeout", `${cmd}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...params, id, cmd }));
    });
  }

  // --- internals ---

  /** @param {ConnectionState} state @param {string} detail */
  setState(state, detail) {
    this.state = state;
    for (const handler of this.stateHandlers) {
      try { handler(state, detail); } catch (e) { console.error(e); }
    }
  }

  open() {
    this.setState("connecting", this.url);
    let ws;
    try {
      ws = new WebSocket(this.url, [SUBPROTOCOL, TOKEN_PREFIX + this.token]);
    } catch (e) {
      this.scheduleReconnect(`cannot connect: ${e.message}`);
      return;
    }
    this.ws = ws;
    let refused = "";
    ws.onmessage = (frame) => {
      if (typeof frame.data !== "string") return;
      let msg;
      try { msg = parseMessage(frame.data); } catch { return; }
      switch (msg.class) {
        case "VERSION":
          if (msg.proto_major !== PROTO_MAJOR) {
            this.stopped = true;
            ws.close(1000, "unknown protocol version");
            this.setState("stopped", `wxcardd speaks protocol ${msg.proto_major}, this client ${PROTO_MAJOR}`);
            return;
          }
          this.version = msg;
          this.attempt = 0;
          this.setState("open", `wxcardd ${msg.release}`);
          if (this.eventHandlers.size > 0) this.sendSubscribe();
          return;
        case "RESULT":
        case "ERROR": {
          const waiting = this.pending.get(msg.id);
          if (waiting) {
            this.pending.delete(msg.id);
            clearTimeout(waiting.timer);
            if (msg.class === "RESULT") waiting.resolve(msg.result);
            else waiting.reject(new WxCardError(msg.error.code, msg.error.message));
          } else if (msg.class === "ERROR" && msg.id === null) {
            // forbidden (refused) or overrun (dropped): the connection is about to close.
            if (msg.error.code === "forbidden") refused = msg.error.message;
            console.warn(`wxcardd: ${msg.error.code}: ${msg.error.message}`);
          }
          return;
        }
        case "EVENT":
          for (const handler of this.eventHandlers) {
            try { handler(msg); } catch (e) { console.error(e); }
          }
          return;
      }
    };
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.failPending("the connection to wxcardd was lost");
      if (this.stopped) return;
      if (refused) {
        this.attempt = Math.max(this.attempt, 30);
        this.setState("refused", refused);
      }
      this.scheduleReconnect(refused || `closed (${close.code}${close.reason ? ": " + close.reason : ""})`);
    };
  }

  sendSubscribe() {
    this.request("subscribe").catch((e) => console.warn(`wxcardd: subscribe: ${e.message}`));
  }

  /** @param {string} detail */
  scheduleReconnect(detail) {
    if (this.state !== "refused") this.setState("closed", detail);
    // Exponential backoff with full jitter, so that many pages do not come back at once.
    const ceiling = Math.min(this.backoffMaxMs, this.backoffMinMs * 2 ** Math.min(this.attempt, 16));
    const delay = this.backoffMinMs / 2 + Math.random() * (ceiling - this.backoffMinMs / 2);
    this.attempt++;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { if (!this.stopped) this.open(); }, delay);
  }

  /** @param {string} why */
  failPending(why) {
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.reject(new WxCardError("disconnected", why));
      this.pending.delete(id);
    }
  }
}
