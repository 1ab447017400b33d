// The room page: renders what the connection (client.js) hands it. The
// server-rendered messages stay as they are; this continues after the last one.

import { RoomClient, STOP_CODES } from "./client.js";
import { renderText } from "./text.js";

const TYPING_SHOWN_MS = 4000;
const NEAR_BOTTOM_PX = 80;
const ANNOUNCED_KEPT = 5;

const STOP_TEXT = {
  4403: "You may not enter this room",
  4404: "There is no such room",
  4410: "This room was closed",
  4429: "Disconnected for sending too fast",
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function localTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

class RoomPage {
  constructor(root) {
    const data = root.dataset;
    this.root = root;
    this.me = data.me;
    this.guest = data.guest === "true";
    this.conductor = data.conductor === "true";
    this.canPost = data.canPost === "true";
    this.pageSize = Number(data.pageSize) || 50;
    this.firstSeq = Number(data.firstSeq) || 0;
    this.hasOlder = Boolean($("older"));
    this.loadingOlder = false;
    this.online = new Set();
    this.onlineCount = 0;
    this.typers = new Map(); // author -> timer
    this.seqs = new Map(); // seq -> <li>

    this.list = $("messages");
    this.pendingList = $("pending");
    this.scroller = $("scroller");
    this.status = $("conn-status");
    this.connection = $("connection");
    this.retryButton = $("retry-now");
    this.composer = $("composer");
    this.textarea = $("body");
    this.jump = $("jump-new");

    this.client = new RoomClient({
      slug: data.slug,
      lastSeq: Number(data.lastSeq) || 0,
      historyUrl: data.historyUrl,
      on: {
        state: (state, detail) => this.showState(state, detail),
        hello: (frame) => this.hello(frame),
        message: (message, how) => this.message(message, how),
        edited: (frame) => this.edited(frame),
        deleted: (frame) => this.deleted(frame),
        presence: (frame) => this.presence(frame),
        typing: (frame) => this.typing(frame),
        error: (frame) => this.notice(frame.detail),
        sendFailed: (clientId, detail) => this.sendFailed(clientId, detail),
        sendWaiting: (clientId, detail) => this.markPending(clientId, `waiting: ${detail}`),
      },
    });
  }

  start() {
    for (const li of this.list.querySelectorAll("li[data-seq]")) this.adopt(li);
    this.scrollToBottom();
    this.bindComposer();
    this.bindScrolling();
    this.retryButton.addEventListener("click", () => this.client.retryNow());
    this.client.start();
  }

  // Connection state ----------------------------------------------------------

  showState(state, detail) {
    clearInterval(this.countdown);
    this.connection.dataset.state = state;
    this.retryButton.hidden = state === "connected" || state === "connecting";
    if (state === "reconnecting" && detail.until) {
      // The status is a live region: announce the state once, not every tick.
      const why = detail.code === 4429 ? `${STOP_TEXT[4429]}. ` : "";
      const seconds = el("span", { "aria-hidden": "true" });
      this.status.replaceChildren(`${why}Reconnecting `, seconds);
      const tick = () => {
        const left = Math.max(0, Math.ceil((detail.until - Date.now()) / 1000));
        seconds.textContent = `in ${left} s…`;
      };
      tick();
      this.countdown = setInterval(tick, 1000);
      return;
    }
    const text = {
      connecting: "Connecting…",
      reconnecting: "Reconnecting…",
      connected: "Connected",
      offline: "Offline: waiting for the network",
    }[state];
    if (state === "stopped") {
      const base = STOP_TEXT[detail.code] || "Disconnected";
      this.status.textContent = detail.reason ? `${base}: ${detail.reason}` : base;
      if (STOP_CODES.has(detail.code)) this.cannotPost(detail.reason || base);
    } else {
      this.status.textContent = text;
    }
  }

  hello(frame) {
    const you = frame.you || {};
    this.me = you.name || this.me;
    this.conductor = Boolean(you.conductor);
    this.canPost = Boolean(you.can_post);
    if (this.canPost) {
      if (this.composer) this.composer.hidden = false;
      $("cannot-post").hidden = true;
    } else {
      this.cannotPost(you.why_not || "you may not post here");
    }
    this.online = new Set(frame.online || []);
    this.onlineCount = frame.online_count ?? this.online.size;
    this.renderOnline();
  }

  cannotPost(why) {
    if (this.composer) this.composer.hidden = true;
    $("why-not").textContent = why.charAt(0).toUpperCase() + why.slice(1);
    $("cannot-post").hidden = false;
  }

  notice(text) {
    const box = $("notice");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => (box.hidden = true), 6000);
  }

  // Messages ----------------------------------------------------------------

  adopt(li) {
    // A server-rendered message: same element, now with links, local time and actions.
    const seq = Number(li.dataset.seq);
    this.seqs.set(seq, li);
    const time = li.querySelector("time");
    if (time) time.textContent = localTime(time.getAttribute("datetime")) || time.textContent;
    if (!li.classList.contains("deleted")) {
      const body = li.querySelector(".body");
      renderText(body, body.textContent);
    }
    this.decorate(li);
  }

  build(message) {
    const li = el("li", { class: "message", id: `m${message.seq}` });
    li.dataset.seq = message.seq;
    li.dataset.author = message.author;
    const meta = el(
      "p",
      { class: "meta" },
      el("span", { class: "author", text: message.author }),
      " ",
      el("time", { dateTime: message.sent_at || "", text: localTime(message.sent_at), title: message.sent_at || "" }),
    );
    li.append(meta, el("p", { class: "body" }));
    this.fill(li, message.deleted ? null : message.body, Boolean(message.edited_at));
    return li;
  }

  fill(li, body, edited) {
    const bodyEl = li.querySelector(".body");
    li.querySelector(".edit-form")?.remove();
    bodyEl.hidden = false;
    if (body === null) {
      li.classList.add("deleted");
      bodyEl.textContent = "(deleted)";
      li.querySelector(".edited")?.remove();
    } else {
      renderText(bodyEl, body);
      if (edited && !li.querySelector(".edited")) li.querySelector(".meta time").after(" ", el("span", { class: "edited", text: "(edited)" }));
    }
    this.decorate(li);
  }

  isMine(li) {
    return !this.guest && li.dataset.author === this.me;
  }

  decorate(li) {
    li.querySelector(".actions")?.remove();
    li.classList.toggle("mine", this.isMine(li));
    if (li.classList.contains("deleted") || this.guest || !(this.isMine(li) || this.conductor)) return;
    const seq = Number(li.dataset.seq);
    const edit = el("button", { type: "button", class: "small", text: "Edit" });
    edit.setAttribute("aria-label", `Edit message ${seq}`);
    edit.addEventListener("click", () => this.startEdit(li));
    const remove = el("button", { type: "button", class: "small", text: "Delete" });
    remove.setAttribute("aria-label", `Delete message ${seq}`);
    remove.addEventListener("click", () => this.confirmDelete(li, remove));
    li.querySelector(".meta").append(el("span", { class: "actions" }, edit, remove));
  }

  message(message, { mine, live }) {
    if (mine) this.pendingList.querySelector(`[data-client-id="${message.client_id}"]`)?.remove();
    $("no-messages")?.remove();
    this.clearTyper(message.author);
    const wasNearBottom = this.nearBottom();
    const li = this.build(message);
    this.insert(li, message.seq);
    if (mine || wasNearBottom) this.scrollToBottom();
    else this.jump.hidden = false;
    if (live && !mine && !message.deleted) this.announce(`${message.author}: ${message.body}`);
  }

  insert(li, seq) {
    this.seqs.set(seq, li);
    const last = this.list.lastElementChild;
    if (!last || Number(last.dataset.seq) < seq) {
      this.list.append(li);
      return;
    }
    const after = [...this.list.children].find((other) => Number(other.dataset.seq) > seq);
    this.list.insertBefore(li, after || null);
  }

  edited(frame) {
    const li = this.seqs.get(frame.seq);
    if (li) this.fill(li, frame.body, true);
  }

  deleted(frame) {
    const li = this.seqs.get(frame.seq);
    if (li) this.fill(li, null, false);
  }

  startEdit(li) {
    if (li.querySelector(".edit-form")) return;
    const bodyEl = li.querySelector(".body");
    const seq = Number(li.dataset.seq);
    const field = el("textarea", { rows: 2, maxLength: Number(this.root.dataset.maxBody) || 4000, id: `edit-${seq}` });
    field.value = bodyEl.textContent;
    const label = el("label", { class: "visually-hidden", htmlFor: field.id, text: `Edit message ${seq}` });
    const cancel = el("button", { type: "button", class: "small quiet", text: "Cancel" });
    const form = el("form", { class: "edit-form" }, label, field, el("button", { type: "submit", class: "small", text: "Save" }), cancel);
    const close = () => {
      form.remove();
      bodyEl.hidden = false;
      li.querySelector(".actions button")?.focus();
    };
    cancel.addEventListener("click", close);
    field.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = field.value;
      if (!body.trim() || body === bodyEl.textContent) return close();
      if (!this.client.edit(seq, body)) return this.notice("Not connected: try again in a moment.");
      close();
    });
    bodyEl.hidden = true;
    bodyEl.after(form);
    field.focus();
  }

  confirmDelete(li, button) {
    if (button.dataset.armed) {
      if (!this.client.remove(Number(li.dataset.seq))) this.notice("Not connected: try again in a moment.");
      return;
    }
    // A second click confirms: no modal dialog to trap focus or block tests.
    button.dataset.armed = "1";
    button.textContent = "Really delete?";
    setTimeout(() => {
      if (button.isConnected) {
        delete button.dataset.armed;
        button.textContent = "Delete";
      }
    }, 4000);
  }

  announce(text) {
    const region = $("announcer");
    region.append(el("p", { text }));
    while (region.childElementCount > ANNOUNCED_KEPT) region.firstElementChild.remove();
  }

  // Sending -----------------------------------------------------------------

  bindComposer() {
    if (!this.composer) return;
    if (this.canPost) this.composer.hidden = false;
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = this.textarea.value;
      if (!body.trim()) return;
      const clientId = this.client.say(body);
      this.textarea.value = "";
      const li = el(
        "li",
        { class: "message pending mine" },
        el("p", { class: "meta" }, el("span", { class: "author", text: this.me }), " ", el("span", { class: "state" })),
        el("p", { class: "body" }),
      );
      li.dataset.clientId = clientId;
      renderText(li.querySelector(".body"), body);
      this.pendingList.append(li);
      this.markPending(clientId, this.client.live ? "sending…" : "waiting for the connection…");
      this.scrollToBottom();
    });
    this.textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.composer.requestSubmit();
      }
    });
    this.textarea.addEventListener("input", () => this.client.typing());
  }

  markPending(clientId, text) {
    const li = this.pendingList.querySelector(`[data-client-id="${clientId}"]`);
    if (li) li.querySelector(".state").textContent = text;
  }

  sendFailed(clientId, detail) {
    const li = this.pendingList.querySelector(`[data-client-id="${clientId}"]`);
    if (!li) return;
    li.classList.add("failed");
    li.querySelector(".state").textContent = `not sent: ${detail}`;
    const dismiss = el("button", { type: "button", class: "small quiet", text: "Dismiss" });
    dismiss.addEventListener("click", () => li.remove());
    li.querySelector(".meta").append(dismiss);
    this.notice(`Not sent: ${detail}`);
  }

  // Presence and typing ---------------------------------------------------------

  presence(frame) {
    for (const name of frame.joined || []) this.online.add(name);
    for (const name of frame.left || []) this.online.delete(name);
    this.onlineCount = frame.online ?? this.online.size;
    this.renderOnline();
  }

  renderOnline() {
    const list = $("online");
    const names = [...this.online].sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }));
    list.replaceChildren(...names.map((name) => el("li", { class: name === this.me ? "me" : "", text: name })));
    const more = this.onlineCount - names.length;
    if (more > 0) list.append(el("li", { class: "more", text: `and ${more} more` }));
    $("online-count").textContent = `(${Math.max(this.onlineCount, names.length)})`;
  }

  typing(frame) {
    if (frame.author === this.me) return;
    clearTimeout(this.typers.get(frame.author));
    this.typers.set(frame.author, setTimeout(() => this.clearTyper(frame.author), TYPING_SHOWN_MS));
    this.renderTypers();
  }

  clearTyper(author) {
    if (!this.typers.has(author)) return;
    clearTimeout(this.typers.get(author));
    this.typers.delete(author);
    this.renderTypers();
  }

  renderTypers() {
    const names = [...this.typers.keys()];
    const text =
      names.length === 0 ? "" :
      names.length === 1 ? `${names[0]} is typing…` :
      names.length === 2 ? `${names[0]} and ${names[1]} are typing…` :
      "Several people are typing…";
    $("typing").textContent = text;
  }

  // Scrolling and history -------------------------------------------------------

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.jump.hidden = true;
  }

  bindScrolling() {
    this.jump.addEventListener("click", () => {
      this.scrollToBottom();
      this.textarea?.focus();
    });
    this.scroller.addEventListener("scroll", () => {
      if (this.nearBottom()) this.jump.hidden = true;
    }, { passive: true });
    const older = $("older");
    if (!older) return;
    $("load-older").addEventListener("click", (event) => {
      event.preventDefault();
      this.loadOlder();
    });
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) this.loadOlder();
    }, { root: this.scroller, rootMargin: "200px 0px 0px 0px" });
    this.observer.observe(older);
  }

  async loadOlder() {
    if (this.loadingOlder || !this.hasOlder || this.firstSeq <= 1) return;
    this.loadingOlder = true;
    const link = $("load-older");
    link.textContent = "Loading older messages…";
    try {
      const page = await this.client.older(this.firstSeq, this.pageSize);
      const fresh = page.messages.filter((message) => !this.seqs.has(message.seq));
      const height = this.scroller.scrollHeight;
      const top = this.scroller.scrollTop;
      const fragment = document.createDocumentFragment();
      for (const message of fresh) {
        const li = this.build(message);
        this.seqs.set(message.seq, li);
        fragment.append(li);
      }
      this.list.prepend(fragment);
      // Keep the message the reader was looking at where it was.
      this.scroller.scrollTop = top + (this.scroller.scrollHeight - height);
      if (page.messages.length) this.firstSeq = Math.min(this.firstSeq, page.messages[0].seq);
      this.hasOlder = page.has_more && this.firstSeq > 1;
      link.textContent = "Load older messages";
      link.href = `?before=${this.firstSeq}`;
      if (!this.hasOlder) {
        this.observer?.disconnect();
        $("older").replaceChildren(el("span", { class: "hint", text: "This is the start of the room." }));
      }
    } catch {
      link.textContent = "Could not load older messages: try again";
    } finally {
      this.loadingOlder = false;
    }
    // Still at the top (a tall screen): keep filling.
    if (this.hasOlder && this.scroller.scrollTop < 200) requestAnimationFrame(() => this.loadOlder());
  }
}

const root = $("room");
if (root) new RoomPage(root).start();
