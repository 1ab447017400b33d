// The room connection: ordered delivery, resume, retries. No DOM here; the
// page (room.js) renders what this hands it, in seq order, exactly once.

// Close codes after which reconnecting cannot help (docs/protocol.md).
export const STOP_CODES = new Set([4403, 4404, 4410]);
export const FLOODING = 4429;

const TYPING_EVERY_MS = 3000;
const PING_EVERY_MS = 25000;
// Daphne pings every 20 s and any frame counts as life: a socket silent for
// this long is dead even if the browser has not noticed (sleep, lost Wi-Fi).
const STALE_AFTER_MS = 70000;
// A connection that stayed up this long was healthy: start backing off afresh.
const HEALTHY_AFTER_MS = 10000;
const FLOOD_PAUSE_MS = 30000;

export function randomId() {
  // crypto.randomUUID exists only in secure contexts; plain http sites need this.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class RoomClient {
  constructor({ slug, lastSeq, rev = 0, historyUrl, on, baseDelayMs = 500, maxDelayMs = 15000 }) {
    this.slug = slug;
    this.lastSeq = lastSeq; // highest seq handed to the page; all below it were too
    // Highest change rev the page shows: a reconnect asks for later edits,
    // deletes and reactions with ?rev= (protocol v1.1).
    this.rev = rev;
    this.knownSeq = lastSeq; // highest seq known to exist
    this.historyUrl = historyUrl;
    this.on = on;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.ahead = new Map(); // seq -> message that arrived before the one it follows
    this.pending = new Map(); // client_id -> {body, replyTo}, until its own message frame returns
    this.ws = null;
    this.synced = false;
    this.attempt = 0;
    this.timer = null;
    this.closing = null;
    this.liveSince = 0;
    this.lastFrameAt = 0;
    this.lastTypingAt = 0;
    this.filling = false;
    this.stopped = false;
  }

  start() {
    window.addEventListener("online", () => this.retryNow());
    window.addEventListener("offline", () => this.dropSocket(1006));
    setInterval(() => this.heartbeat(), PING_EVERY_MS);
    this.connect();
  }

  get live() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.synced;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws/rooms/${encodeURIComponent(this.slug)}/?after=${this.lastSeq}&rev=${this.rev}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) return;
    if (navigator.onLine === false) {
      this.on.state("offline", {});
      return;
    }
    this.on.state(this.attempt > 0 ? "reconnecting" : "connecting", {});
    const ws = new WebSocket(this.url());
    this.ws = ws;
    this.synced = false;
    this.closing = null;
    this.lastFrameAt = Date.now();
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
  }

  retryNow() {
    this.stopped = false;
    if (this.ws) return;
    this.connect();
  }

  // Incoming ---------------------------------------------------------------

  receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "hello":
        this.on.hello(frame);
        break;
      case "reactions":
      case "edited":
      case "deleted":
        // Changes come in rev order, each once; replayed ones carry the latest state.
        if (typeof frame.rev === "number") this.rev = Math.max(this.rev, frame.rev);
        this.on[frame.type](frame);
        break;
      case "read":
        this.on.read(frame);
        break;
      case "message":
        this.accept(frame, true);
        break;
      case "synced":
        if (typeof frame.rev === "number") this.rev = Math.max(this.rev, frame.rev);
        this.synced = true;
        this.liveSince = Date.now();
        this.on.state("connected", {});
        this.flushPending();
        break;
      case "truncated":
        // The server replays only the newest messages; the rest come over HTTP.
        this.knownSeq = Math.max(this.knownSeq, frame.to);
        this.fillGap();
        break;
      case "presence":
      case "typing":
        this.on[frame.type](frame);
        break;
      case "error":
        this.refused(frame);
        break;
      case "closing":
        this.closing = { code: frame.code, reason: frame.reason };
        break;
      default:
        break; // pong, and frame types newer than this page
    }
  }

  accept(message, live) {
    const seq = message.seq;
    if (seq <= this.lastSeq || this.ahead.has(seq)) return; // seen already
    this.knownSeq = Math.max(this.knownSeq, seq);
    if (seq !== this.lastSeq + 1) {
      this.ahead.set(seq, message);
      this.fillGap();
      return;
    }
    this.deliver(message, live);
    let next;
    while ((next = this.ahead.get(this.lastSeq + 1))) {
      this.ahead.delete(next.seq);
      this.deliver(next, live);
    }
  }

  deliver(message, live) {
    this.lastSeq = message.seq;
    const mine = message.client_id != null && this.pending.delete(message.client_id);
    this.on.message(message, { mine, live: live && this.synced });
  }

  async fillGap() {
    if (this.filling) return;
    this.filling = true;
    try {
      for (;;) {
        const firstAhead = this.ahead.size ? Math.min(...this.ahead.keys()) : Infinity;
        const target = Math.min(firstAhead - 1, this.knownSeq);
        if (this.lastSeq >= target) break;
        const before = this.lastSeq;
        const want = Math.max(1, Math.min(target - this.lastSeq, 200));
        const response = await fetch(`${this.historyUrl}?after=${this.lastSeq}&limit=${want}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (!response.ok) throw new Error(`history ${response.status}`);
        const page = await response.json();
        for (const message of page.messages) this.accept(message, false);
        if (this.lastSeq === before) {
          // The server has nothing there: do not stall the room on it.
          this.knownSeq = this.lastSeq;
          if (firstAhead !== Infinity) {
            this.lastSeq = firstAhead - 1;
            this.accept(this.ahead.get(firstAhead), false);
          }
        }
      }
    } catch {
      setTimeout(() => this.fillGap(), 2000);
    } finally {
      this.filling = false;
    }
  }

  refused(frame) {
    const ref = frame.ref;
    if (ref && this.pending.has(ref)) {
      if (frame.code === "rate_limited" || frame.code === "unavailable") {
        const wait = frame.code === "rate_limited" ? (frame.retry_after || 1) * 1000 : 2000;
        this.on.sendWaiting(ref, frame.detail);
        setTimeout(() => this.sendPending(ref), wait);
        return;
      }
      this.pending.delete(ref);
      this.on.sendFailed(ref, frame.detail);
      return;
    }
    this.on.error(frame);
  }

  // Closing and backing off ----------------------------------------------------

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.synced = false;
    if (this.closing) ({ code, reason } = this.closing);
    if (this.liveSince && Date.now() - this.liveSince > HEALTHY_AFTER_MS) this.attempt = 0;
    this.liveSince = 0;
    if (STOP_CODES.has(code)) {
      this.stopped = true;
      this.on.state("stopped", { code, reason });
      return;
    }
    let delay = this.nextDelay();
    if (code === FLOODING) delay += FLOOD_PAUSE_MS;
    if (navigator.onLine === false) {
      this.on.state("offline", {});
      return;
    }
    this.on.state("reconnecting", { until: Date.now() + delay, code, reason });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  nextDelay() {
    // Capped exponential backoff with "equal jitter": never less than half the
    // step, so a crowd of pages that lost the same server spreads out.
    const step = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(step / 2 + Math.random() * (step / 2));
  }

  dropSocket(code) {
    const ws = this.ws;
    if (!ws) return;
    this.closed(ws, code, "");
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close();
    } catch {
      /* already closed */
    }
  }

  heartbeat() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastFrameAt > STALE_AFTER_MS) {
      this.dropSocket(1006);
      return;
    }
    this.ws.send('{"type":"ping"}');
  }

  // Outgoing ---------------------------------------------------------------

  say(body, replyTo = null) {
    const clientId = randomId();
    this.pending.set(clientId, { body, replyTo });
    this.sendPending(clientId);
    return clientId;
  }

  sendPending(clientId) {
    const draft = this.pending.get(clientId);
    if (draft === undefined || !this.live) return; // sent after the next `synced`
    const frame = { type: "say", body: draft.body, client_id: clientId };
    if (draft.replyTo) frame.reply_to = draft.replyTo;
    this.ws.send(JSON.stringify(frame));
  }

  flushPending() {
    // Same client_id as before: if the first try was stored, the server
    // answers with the original message instead of storing it twice.
    for (const clientId of this.pending.keys()) this.sendPending(clientId);
  }

  discard(clientId) {
    this.pending.delete(clientId);
  }

  typing() {
    const now = Date.now();
    if (!this.live || now - this.lastTypingAt < TYPING_EVERY_MS) return;
    this.lastTypingAt = now;
    this.ws.send('{"type":"typing"}');
  }

  edit(seq, body) {
    if (!this.live) return false;
    this.ws.send(JSON.stringify({ type: "edit", seq, body }));
    return true;
  }

  remove(seq) {
    if (!this.live) return false;
    this.ws.send(JSON.stringify({ type: "delete", seq }));
    return true;
  }

  react(seq, emoji, on) {
    if (!this.live) return false;
    this.ws.send(JSON.stringify({ type: "react", seq, emoji, on }));
    return true;
  }

  read(seq) {
    // Moves the read marker forward only; lost while offline, sent again on the next scroll.
    if (!this.live) return false;
    this.ws.send(JSON.stringify({ type: "read", seq }));
    return true;
  }

  async search(url, words, limit = 20) {
    const response = await fetch(`${url}?q=${encodeURIComponent(words)}&limit=${limit}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(`search ${response.status}`);
    return response.json();
  }

  async older(beforeSeq, limit) {
    const response = await fetch(`${this.historyUrl}?before=${beforeSeq}&limit=${limit}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(`history ${response.status}`);
    return response.json();
  }
}
