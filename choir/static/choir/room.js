// The room page: renders what the connection (client.js) hands it. The
// server-rendered messages stay as they are; this continues after the last one.

import { RoomClient, STOP_CODES } from "./client.js";
import { renderText } from "./text.js";

const TYPING_SHOWN_MS = 4000;
const NEAR_BOTTOM_PX = 80;
const ANNOUNCED_KEPT = 5;
// Messages from one author this close together sit under one name.
const GROUP_WITHIN_MS = 5 * 60 * 1000;
// Read markers go out at most this often while the reader scrolls.
const READ_EVERY_MS = 600;
const PICKER = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];
const EXCERPT_CHARS = 140;

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

function parseTime(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? null : when;
}

function clock(when) {
  return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// "just now", "5 min ago", "3 h ago" today; the clock time on other days (a day divider says which).
function relativeTime(when, now = new Date()) {
  const seconds = (now - when) / 1000;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (when.toDateString() === now.toDateString()) return `${Math.floor(seconds / 3600)} h ago`;
  return clock(when);
}

function exactTime(when) {
  return when.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
}

function dayLabel(when, now = new Date()) {
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (when.toDateString() === now.toDateString()) return "Today";
  if (when.toDateString() === yesterday.toDateString()) return "Yesterday";
  return when.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year: "numeric" });
}

function setTime(time) {
  const when = parseTime(time.getAttribute("datetime"));
  if (!when) return;
  time.textContent = relativeTime(when);
  time.title = exactTime(when);
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
    this.mine = new Map(); // seq -> Set of the emoji this reader reacted with
    this.meUser = (data.meUser || "").toLowerCase(); // mentions name users: empty for guests
    this.readSeq = data.readSeq === "" ? null : Number(data.readSeq);
    this.sentRead = this.readSeq ?? 0; // highest seq a `read` frame was sent for
    this.seenSeq = this.sentRead; // highest seq that scrolled into view
    this.at = Number(data.at) || null;
    this.replyTo = null;
    this.searchUrl = data.searchUrl;
    this.baseTitle = data.title || document.title;

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
      rev: Number(data.rev) || 0,
      historyUrl: data.historyUrl,
      on: {
        state: (state, detail) => this.showState(state, detail),
        hello: (frame) => this.hello(frame),
        message: (message, how) => this.message(message, how),
        edited: (frame) => this.edited(frame),
        deleted: (frame) => this.deleted(frame),
        reactions: (frame) => this.reactions(frame),
        read: (frame) => this.markRead(frame.seq, false),
        presence: (frame) => this.presence(frame),
        typing: (frame) => this.typing(frame),
        error: (frame) => this.notice(frame.detail),
        sendFailed: (clientId, detail) => this.sendFailed(clientId, detail),
        sendWaiting: (clientId, detail) => this.markPending(clientId, `waiting: ${detail}`),
      },
    });
  }

  start() {
    this.bindReading();
    for (const li of this.list.querySelectorAll("li[data-seq]")) this.adopt(li);
    this.regroup();
    this.placeUnreadDivider();
    this.firstView();
    this.bindComposer();
    this.bindScrolling();
    this.bindSearch();
    this.bindNotifications();
    this.retryButton.addEventListener("click", () => this.client.retryNow());
    setInterval(() => this.list.querySelectorAll("time[datetime]").forEach(setTime), 60000);
    this.client.start();
  }

  firstView() {
    // A permalink opens at its message; a returning reader at the first unread; anyone else at the end.
    const target = (this.at && this.seqs.get(this.at)) || $("unread-divider");
    if (target) {
      // Held there: what arrives next does not scroll the reader away (see message()).
      this.hold = true;
      target.scrollIntoView({ block: "center" });
      if (this.at) this.seqs.get(this.at)?.focus?.();
    } else {
      this.scrollToBottom();
    }
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
    const before = `${this.conductor}/${this.canPost}`;
    this.conductor = Boolean(you.conductor);
    this.canPost = Boolean(you.can_post);
    // What one may do changed since the page was rendered: the buttons follow.
    if (before !== `${this.conductor}/${this.canPost}`) for (const li of this.seqs.values()) this.decorate(li);
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
    // A server-rendered message: same element, now with local times, formatting and actions.
    const seq = Number(li.dataset.seq);
    this.seqs.set(seq, li);
    const time = li.querySelector("time");
    if (time) setTime(time);
    if (!li.classList.contains("deleted")) renderText(li.querySelector(".body"), li.dataset.body ?? "", this.meUser);
    const chips = [...li.querySelectorAll(".reactions .chip")];
    const counts = Object.fromEntries(chips.map((chip) => [chip.dataset.emoji, Number(chip.querySelector(".n").textContent)]));
    this.mine.set(seq, new Set(chips.filter((chip) => chip.classList.contains("mine")).map((chip) => chip.dataset.emoji)));
    this.renderReactions(li, counts);
    this.bindQuote(li);
    this.decorate(li);
    this.watch(li);
  }

  build(message) {
    const li = el("li", { class: "message", id: `m${message.seq}`, tabIndex: -1 });
    li.dataset.seq = message.seq;
    li.dataset.author = message.author;
    if (message.reply_to) li.append(this.quote(message.reply_to));
    const time = el("time", { dateTime: message.sent_at || "" });
    setTime(time);
    const link = el("a", { class: "permalink", href: `?at=${message.seq}#m${message.seq}` }, time);
    const meta = el("p", { class: "meta" }, el("span", { class: "author", text: message.author }), " ", link);
    li.append(meta, el("div", { class: "body" }));
    if (!this.guest && (message.mentions || []).some((name) => name.toLowerCase() === this.meUser)) li.classList.add("mentions-me");
    this.mine.set(message.seq, new Set(message.mine || []));
    this.fill(li, message.deleted ? null : message.body, Boolean(message.edited_at));
    this.renderReactions(li, message.deleted ? {} : message.reactions || {});
    this.bindQuote(li);
    this.watch(li);
    return li;
  }

  quote(reply) {
    const link = el(
      "a",
      { href: `?at=${reply.seq}#m${reply.seq}` },
      el("span", { class: "quote-author", text: reply.author }),
      " ",
      el("span", { class: "excerpt", text: reply.excerpt || "(deleted)" }),
    );
    link.dataset.seq = reply.seq;
    return el("p", { class: "quote" }, link);
  }

  bindQuote(li) {
    const link = li.querySelector(".quote a");
    if (!link) return;
    link.addEventListener("click", (event) => {
      const parent = this.seqs.get(Number(link.dataset.seq));
      if (!parent) return; // not on this page: the permalink opens it
      event.preventDefault();
      this.flash(parent);
    });
  }

  flash(li) {
    li.scrollIntoView({ block: "center", behavior: "smooth" });
    li.classList.remove("flash");
    void li.offsetWidth; // restart the animation
    li.classList.add("flash");
    li.focus({ preventScroll: true });
  }

  fill(li, body, edited) {
    const bodyEl = li.querySelector(".body");
    li.querySelector(".edit-form")?.remove();
    bodyEl.hidden = false;
    if (body === null) {
      li.classList.add("deleted");
      li.dataset.body = "";
      bodyEl.textContent = "(deleted)";
      li.querySelector(".edited")?.remove();
      li.querySelector(".reactions")?.remove();
    } else {
      li.dataset.body = body;
      renderText(bodyEl, body, this.meUser);
      if (edited && !li.querySelector(".edited")) li.querySelector(".meta .permalink").after(" ", el("span", { class: "edited", text: "(edited)" }));
    }
    this.decorate(li);
  }

  isMine(li) {
    return !this.guest && li.dataset.author === this.me;
  }

  decorate(li) {
    li.querySelector(".actions")?.remove();
    li.querySelector(".tools")?.remove();
    li.classList.toggle("mine", this.isMine(li));
    if (li.classList.contains("deleted")) return;
    const seq = Number(li.dataset.seq);
    const tools = el("span", { class: "tools" });
    if (this.canPost) {
      const reply = el("button", { type: "button", class: "small quiet", text: "Reply" });
      reply.setAttribute("aria-label", `Reply to message ${seq}`);
      reply.addEventListener("click", () => this.startReply(li));
      tools.append(reply);
    }
    if (this.canReact()) {
      const react = el("button", { type: "button", class: "small quiet react-open", text: "React" });
      react.setAttribute("aria-label", `React to message ${seq}`);
      react.setAttribute("aria-expanded", "false");
      react.addEventListener("click", () => this.togglePicker(li, react));
      tools.append(react);
    }
    if (tools.childElementCount) li.querySelector(".meta").append(tools);
    if (this.guest || !(this.isMine(li) || this.conductor)) return;
    const edit = el("button", { type: "button", class: "small", text: "Edit" });
    edit.setAttribute("aria-label", `Edit message ${seq}`);
    edit.addEventListener("click", () => this.startEdit(li));
    const remove = el("button", { type: "button", class: "small", text: "Delete" });
    remove.setAttribute("aria-label", `Delete message ${seq}`);
    remove.addEventListener("click", () => this.confirmDelete(li, remove));
    li.querySelector(".meta").append(el("span", { class: "actions" }, edit, remove));
  }

  canReact() {
    // Whoever may post may react; so may a signed-in listener of a stage room (the server has the last word).
    return this.canPost || !this.guest;
  }

  // Reactions -------------------------------------------------------------------

  renderReactions(li, counts) {
    li.querySelector(".reactions")?.remove();
    const seq = Number(li.dataset.seq);
    const mine = this.mine.get(seq) || new Set();
    const chips = Object.entries(counts).filter(([, n]) => n > 0);
    if (!chips.length || li.classList.contains("deleted")) return;
    const row = el("p", { class: "reactions" });
    for (const [emoji, count] of chips) {
      const chip = el("button", { type: "button", class: `chip${mine.has(emoji) ? " mine" : ""}` }, el("span", { class: "emoji", text: emoji }), el("span", { class: "n", text: String(count) }));
      chip.dataset.emoji = emoji;
      chip.setAttribute("aria-pressed", mine.has(emoji) ? "true" : "false");
      chip.setAttribute("aria-label", `${emoji} ${count}${mine.has(emoji) ? ", yours" : ""}`);
      chip.disabled = !this.canReact();
      chip.addEventListener("click", () => this.react(seq, emoji));
      row.append(chip);
    }
    li.querySelector(".body").after(row);
  }

  currentCounts(li) {
    return Object.fromEntries([...li.querySelectorAll(".reactions .chip")].map((chip) => [chip.dataset.emoji, Number(chip.querySelector(".n").textContent)]));
  }

  react(seq, emoji) {
    const on = !(this.mine.get(seq) || new Set()).has(emoji);
    if (!this.client.react(seq, emoji, on)) this.notice("Not connected: try again in a moment.");
  }

  reactions(frame) {
    const li = this.seqs.get(frame.seq);
    if (!li) return;
    if (frame.actor && frame.actor === this.me && !this.guest && frame.emoji) {
      const mine = this.mine.get(frame.seq) || new Set();
      if (frame.on) mine.add(frame.emoji);
      else mine.delete(frame.emoji);
      this.mine.set(frame.seq, mine);
    }
    this.renderReactions(li, frame.counts || {});
  }

  togglePicker(li, button) {
    const open = li.querySelector(".picker");
    document.querySelectorAll(".picker").forEach((picker) => picker.remove());
    document.querySelectorAll(".react-open").forEach((b) => b.setAttribute("aria-expanded", "false"));
    if (open) return;
    const seq = Number(li.dataset.seq);
    const picker = el("span", { class: "picker", role: "group", "aria-label": "Pick a reaction" });
    for (const emoji of PICKER) {
      const choice = el("button", { type: "button", class: "small quiet emoji", text: emoji });
      choice.setAttribute("aria-label", `React with ${emoji}`);
      choice.addEventListener("click", () => {
        picker.remove();
        button.setAttribute("aria-expanded", "false");
        this.react(seq, emoji);
        button.focus();
      });
      picker.append(choice);
    }
    picker.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        picker.remove();
        button.setAttribute("aria-expanded", "false");
        button.focus();
      }
    });
    button.setAttribute("aria-expanded", "true");
    button.after(picker);
    picker.firstElementChild.focus();
  }

  // Replies ---------------------------------------------------------------------

  startReply(li) {
    if (!this.composer || !this.canPost) return;
    const body = li.dataset.body || "";
    this.replyTo = { seq: Number(li.dataset.seq), author: li.dataset.author, excerpt: body.slice(0, EXCERPT_CHARS) };
    $("replying-text").replaceChildren("Replying to ", el("strong", { text: li.dataset.author }), `: ${body.slice(0, 80)}${body.length > 80 ? "…" : ""}`);
    $("replying").hidden = false;
    this.textarea.focus();
  }

  cancelReply() {
    this.replyTo = null;
    if ($("replying")) $("replying").hidden = true;
  }

  message(message, { mine, live }) {
    if (mine) this.pendingList.querySelector(`[data-client-id="${message.client_id}"]`)?.remove();
    $("no-messages")?.remove();
    this.clearTyper(message.author);
    const wasNearBottom = this.nearBottom();
    const li = this.build(message);
    this.insert(li, message.seq);
    this.regroupSoon();
    if (mine) this.hold = false;
    if (mine || (wasNearBottom && !this.hold)) this.scrollToBottom();
    else this.jump.hidden = false;
    if (live && !mine && !message.deleted) {
      this.announce(`${message.author}: ${message.body}`);
      if (li.classList.contains("mentions-me")) this.notifyMention(message);
    }
    if (mine) this.markRead(message.seq, true); // what one writes, one has read
    this.showUnread();
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
    if (li) {
      this.fill(li, frame.body, true);
      if (frame.reactions) this.renderReactions(li, frame.reactions); // a replayed change carries them
    }
    this.requote(frame.seq, frame.body.slice(0, EXCERPT_CHARS));
  }

  deleted(frame) {
    const li = this.seqs.get(frame.seq);
    if (li) this.fill(li, null, false);
    this.requote(frame.seq, "");
    this.showUnread();
  }

  requote(seq, excerpt) {
    // Quotes show the parent as it is now.
    for (const quoted of this.list.querySelectorAll(`.quote a[data-seq="${seq}"] .excerpt`)) quoted.textContent = excerpt || "(deleted)";
  }

  startEdit(li) {
    if (li.querySelector(".edit-form")) return;
    const bodyEl = li.querySelector(".body");
    const seq = Number(li.dataset.seq);
    const field = el("textarea", { rows: 2, maxLength: Number(this.root.dataset.maxBody) || 4000, id: `edit-${seq}` });
    field.value = li.dataset.body ?? bodyEl.textContent;
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
      if (!body.trim() || body === (li.dataset.body ?? bodyEl.textContent)) return close();
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
      const reply = this.replyTo;
      const clientId = this.client.say(body, reply ? reply.seq : null);
      this.textarea.value = "";
      this.cancelReply();
      const li = el(
        "li",
        { class: "message pending mine" },
        el("p", { class: "meta" }, el("span", { class: "author", text: this.me }), " ", el("span", { class: "state" })),
        el("div", { class: "body" }),
      );
      if (reply) li.prepend(this.quote(reply));
      li.dataset.clientId = clientId;
      renderText(li.querySelector(".body"), body, this.meUser);
      this.pendingList.append(li);
      this.markPending(clientId, this.client.live ? "sending…" : "waiting for the connection…");
      this.scrollToBottom();
    });
    this.textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.composer.requestSubmit();
      } else if (event.key === "Escape" && this.replyTo) {
        event.preventDefault();
        this.cancelReply();
      } else if (event.key === "ArrowUp" && !this.textarea.value && !event.isComposing) {
        // Up in an empty composer edits one's last message.
        const last = [...this.list.querySelectorAll("li.message.mine:not(.deleted)")].pop();
        if (last) {
          event.preventDefault();
          last.scrollIntoView({ block: "nearest" });
          this.startEdit(last);
        }
      }
    });
    $("cancel-reply")?.addEventListener("click", () => {
      this.cancelReply();
      this.textarea.focus();
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

  // Grouping and day dividers ----------------------------------------------------

  regroupSoon() {
    if (this.regroupQueued) return;
    this.regroupQueued = true;
    requestAnimationFrame(() => {
      this.regroupQueued = false;
      this.regroup();
    });
  }

  regroup() {
    // Consecutive messages from one author within a few minutes share one name;
    // a divider starts each day. Both are recomputed from the list, so
    // inserts in any order (older pages, gap fills) come out right.
    this.list.querySelectorAll("li.day").forEach((divider) => divider.remove());
    let previous = null;
    let previousDay = "";
    for (const li of this.list.querySelectorAll("li[data-seq]")) {
      const when = parseTime(li.querySelector("time")?.getAttribute("datetime"));
      const day = when ? when.toDateString() : previousDay;
      if (when && day !== previousDay) {
        const divider = el("li", { class: "day", role: "separator" }, el("span", { text: dayLabel(when) }));
        li.before(divider);
        previous = null;
      }
      const prevWhen = previous && parseTime(previous.querySelector("time")?.getAttribute("datetime"));
      const grouped =
        previous !== null &&
        previous.dataset.author === li.dataset.author &&
        !li.querySelector(".quote") &&
        !li.previousElementSibling?.classList.contains("unread-divider") &&
        when && prevWhen && when - prevWhen < GROUP_WITHIN_MS;
      li.classList.toggle("cont", Boolean(grouped));
      previous = li;
      previousDay = day;
    }
  }

  // Reading -----------------------------------------------------------------------

  bindReading() {
    if (this.guest || !this.meUser) return; // read markers are for signed-in people
    this.readObserver = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        const seq = Number(entry.target.dataset.seq);
        if (seq > this.seenSeq) this.seenSeq = seq;
      }
      this.readSoon();
    }, { root: this.scroller, threshold: 0.5 });
    document.addEventListener("visibilitychange", () => this.readSoon());
  }

  watch(li) {
    this.readObserver?.observe(li);
  }

  readSoon() {
    if (document.visibilityState !== "visible" || this.seenSeq <= this.sentRead || this.readTimer) return;
    this.readTimer = setTimeout(() => {
      this.readTimer = null;
      if (this.seenSeq > this.sentRead && this.client.read(this.seenSeq)) {
        this.sentRead = this.seenSeq;
        this.markRead(this.seenSeq, false);
      } else if (this.seenSeq > this.sentRead) {
        this.readSoon();
      }
    }, READ_EVERY_MS);
  }

  markRead(seq, send) {
    // From this tab's scrolling, from another tab of the same person (a `read` frame), or a post of one's own.
    if (this.readSeq !== null && seq <= this.readSeq) return;
    this.readSeq = seq;
    if (seq > this.seenSeq) this.seenSeq = seq;
    if (send && seq > this.sentRead && this.client.read(seq)) this.sentRead = seq;
    this.showUnread();
  }

  unreadItems() {
    if (this.guest || !this.meUser) return [];
    const after = this.readSeq ?? 0;
    return [...this.seqs.entries()]
      .filter(([seq, li]) => seq > after && !li.classList.contains("deleted") && !li.classList.contains("mine"))
      .sort((a, b) => a[0] - b[0])
      .map(([, li]) => li);
  }

  placeUnreadDivider() {
    // "New since you were last here": only for a reader with a marker, before the first unread.
    if (this.readSeq === null || this.at) return;
    const first = this.unreadItems()[0];
    if (!first) return;
    const divider = el("li", { class: "unread-divider", id: "unread-divider", role: "separator" }, el("span", { text: "New since you were last here" }));
    first.before(divider);
    first.classList.remove("cont");
    $("jump-unread").addEventListener("click", () => {
      const target = this.unreadItems()[0] || divider;
      this.flash(target);
    });
    this.showUnread();
  }

  showUnread() {
    const unread = this.unreadItems();
    document.title = unread.length ? `(${unread.length}) ${this.baseTitle}` : this.baseTitle;
    const button = $("jump-unread");
    if (!button) return;
    const first = unread[0];
    let hidden = true;
    if (first && $("unread-divider")) {
      const box = this.scroller.getBoundingClientRect();
      const top = first.getBoundingClientRect().top;
      hidden = top >= box.top && top <= box.bottom; // already in view
      button.textContent = `${unread.length} unread: jump to the first`;
    }
    button.hidden = hidden;
  }

  // Mentions ----------------------------------------------------------------------

  bindNotifications() {
    const button = $("notify-mentions");
    if (!button || !("Notification" in window) || this.guest || !this.meUser) return;
    if (Notification.permission !== "default") return;
    button.hidden = false;
    // Browsers let a page ask only from a user gesture.
    button.addEventListener("click", async () => {
      await Notification.requestPermission();
      button.hidden = true;
    });
  }

  notifyMention(message) {
    if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
    const note = new Notification(`${message.author} mentioned you in ${this.baseTitle}`, { body: message.body.slice(0, 200), tag: `choir-${message.room}-${message.seq}` });
    note.onclick = () => {
      window.focus();
      const li = this.seqs.get(message.seq);
      if (li) this.flash(li);
    };
  }

  // Search ------------------------------------------------------------------------

  bindSearch() {
    const form = $("search");
    const results = $("search-results");
    if (!form || !this.searchUrl) return;
    form.hidden = false;
    const field = $("search-q");
    const close = () => {
      results.hidden = true;
      results.replaceChildren();
    };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const words = field.value.trim();
      if (!words) return close();
      results.hidden = false;
      results.replaceChildren(el("p", { class: "hint", text: "Searching…" }));
      let page;
      try {
        page = await this.client.search(this.searchUrl, words);
      } catch {
        results.replaceChildren(el("p", { class: "hint", text: "Search failed: try again." }));
        return;
      }
      const closeButton = el("button", { type: "button", class: "small quiet", text: "Close" });
      closeButton.addEventListener("click", close);
      const heading = el("p", { class: "results-heading" }, `${page.messages.length}${page.has_more ? "+" : ""} found for “${words}” `, closeButton);
      const list = el("ol", { class: "results" });
      for (const message of page.messages) {
        const when = parseTime(message.sent_at);
        const link = el("a", { href: `?at=${message.seq}#m${message.seq}`, class: "result" },
          el("span", { class: "author", text: message.author }), " ",
          el("time", { dateTime: message.sent_at || "", text: when ? `${dayLabel(when)} ${clock(when)}` : "" }),
          el("span", { class: "body" }));
        renderText(link.querySelector(".body"), message.body, this.meUser);
        link.dataset.seq = message.seq;
        link.addEventListener("click", (click) => {
          const li = this.seqs.get(message.seq);
          if (!li) return; // not on this page: the permalink opens it in context
          click.preventDefault();
          close();
          this.list.querySelectorAll("li.at").forEach((other) => other.classList.remove("at"));
          li.classList.add("at");
          this.flash(li);
        });
        list.append(el("li", {}, link));
      }
      if (!page.messages.length) list.append(el("li", { class: "hint", text: "Nothing found." }));
      results.replaceChildren(heading, list);
    });
    field.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        field.value = "";
        close();
      }
    });
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
      this.hold = false;
      this.scrollToBottom();
      this.textarea?.focus();
    });
    // Only the reader's own scrolling to the end lets new messages scroll the page again.
    for (const kind of ["wheel", "touchmove", "keydown"]) {
      this.scroller.addEventListener(kind, () => (this.userScrolled = true), { passive: true });
    }
    this.scroller.addEventListener("scroll", () => {
      if (this.nearBottom() && (this.userScrolled || !this.hold)) {
        this.jump.hidden = true;
        this.hold = false;
      }
      if (!this.scrollQueued) {
        this.scrollQueued = true;
        requestAnimationFrame(() => {
          this.scrollQueued = false;
          this.showUnread();
        });
      }
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
      this.regroup();
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
