"""Conversations on the room page in headless Chromium against a real Daphne server:
replies, reactions, mentions, unread badges and read markers, search and permalinks,
and how a room with all of them looks on a desktop and a phone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from choir import services
from choir.access import Singer
from choir.models import Message, ReadMarker
from tests.browser_support import PHONE, WAIT_MS, chromium, open_tab  # noqa: F401  (chromium is a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def post(room, user, body: str, **kwargs):
    return services.message_post(room=room, singer=Singer(user=user, name=user.username), body=body, **kwargs).message


def no_script_errors(*tabs) -> None:
    for tab in tabs:
        assert tab.errors == [], tab.errors
        assert tab.dialogs == [], f"a dialog opened: {tab.dialogs}"


IN_VIEW = """id => {
  const box = document.getElementById(id).getBoundingClientRect();
  const view = document.getElementById('scroller').getBoundingClientRect();
  return box.top >= view.top - 1 && box.bottom <= view.bottom + 1;
}"""


def chip(tab, seq: int, emoji: str):
    return tab.page.locator(f"#m{seq} .reactions .chip[data-emoji='{emoji}']")


def test_a_reply_shows_its_quote_in_the_other_tab(chromium, daphne, lobby, make_user):
    server = daphne()
    alice, bob = make_user("alice"), make_user("bob")
    post(lobby, alice, "Shall we start with the **round** in `D minor`?")
    a = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    b = open_tab(chromium, server, "/rooms/lobby/", user=bob)
    a.wait_state("connected")
    b.wait_state("connected")

    # Escape cancels a reply; the reply then sent answers message 1.
    b.page.click("#m1 .tools button:has-text('Reply')")
    assert b.page.locator("#replying").is_visible()
    b.page.press("#body", "Escape")
    assert b.page.locator("#replying").is_hidden()
    b.page.click("#m1 .tools button:has-text('Reply')")
    b.say("Yes, and slowly")
    a.wait_body("Yes, and slowly")
    quote = a.page.locator("#m2 .quote")
    assert quote.locator(".quote-author").inner_text() == "alice"
    assert quote.locator(".excerpt").inner_text() == "Shall we start with the **round** in `D minor`?"
    # The parent's formatting is built, not interpreted.
    assert a.page.locator("#m1 .body strong").inner_text() == "round"
    assert a.page.locator("#m1 .body code").inner_text() == "D minor"
    assert Message.objects.get(room=lobby, seq=2).reply_to.seq == 1

    # Up in an empty composer edits one's last message; the quote follows the parent.
    a.page.focus("#body")
    a.page.press("#body", "ArrowUp")
    a.page.fill("#edit-1", "Shall we start with the canon?")
    a.page.press("#edit-1", "Enter")
    b.page.wait_for_selector("#m2 .quote .excerpt:has-text('the canon')", timeout=WAIT_MS)
    b.screenshot("conversation-reply.png")
    no_script_errors(a, b)


def test_reactions_move_counts_on_every_page(chromium, daphne, lobby, make_user):
    server = daphne()
    alice, bob = make_user("alice"), make_user("bob")
    post(lobby, alice, "We sang it through once!")
    a = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    b = open_tab(chromium, server, "/rooms/lobby/", user=bob)
    a.wait_state("connected")
    b.wait_state("connected")

    b.page.click("#m1 .tools button:has-text('React')")
    b.page.click("#m1 .picker button[aria-label='React with 🎉']")
    a.page.wait_for_selector("#m1 .reactions .chip[data-emoji='🎉'] .n:text-is('1')", timeout=WAIT_MS)
    assert "mine" not in chip(a, 1, "🎉").get_attribute("class")
    b.page.wait_for_selector("#m1 .chip.mine[data-emoji='🎉']", timeout=WAIT_MS)

    chip(a, 1, "🎉").click()  # alice joins in
    b.page.wait_for_selector("#m1 .reactions .chip[data-emoji='🎉'] .n:text-is('2')", timeout=WAIT_MS)
    a.page.wait_for_selector("#m1 .chip.mine[data-emoji='🎉'][aria-pressed='true']", timeout=WAIT_MS)
    a.screenshot("conversation-reactions.png")

    chip(b, 1, "🎉").click()  # bob takes his back
    a.page.wait_for_selector("#m1 .reactions .chip[data-emoji='🎉'] .n:text-is('1')", timeout=WAIT_MS)
    b.page.wait_for_selector("#m1 .chip[data-emoji='🎉']:not(.mine)", timeout=WAIT_MS)
    # A fresh page shows the counts and the reader's own from history.
    a.goto("/rooms/lobby/")
    a.wait_state("connected")
    assert chip(a, 1, "🎉").get_attribute("aria-pressed") == "true"
    assert chip(a, 1, "🎉").locator(".n").inner_text() == "1"
    no_script_errors(a, b)


def test_a_mention_is_highlighted_for_the_person_mentioned(chromium, daphne, lobby, make_user):
    server = daphne()
    alice, bob = make_user("alice"), make_user("bob")
    a = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    b = open_tab(chromium, server, "/rooms/lobby/", user=bob)
    a.wait_state("connected")
    b.wait_state("connected")
    a.say("@bob could you take the harmony? _gently_")
    b.wait_body("@bob could you take the harmony? gently")
    assert b.page.locator("#m1.mentions-me .mention.me").inner_text() == "@bob"
    assert b.page.locator("#m1 .body em").inner_text() == "gently"
    # Alice sees the mention, but it is not hers.
    a.wait_body("@bob could you take the harmony? gently")
    assert a.page.locator("#m1.mentions-me").count() == 0
    assert a.page.locator("#m1 .mention:not(.me)").count() == 1
    # Server-rendered, the same.
    b.goto("/rooms/lobby/")
    b.wait_state("connected")
    assert b.page.locator("#m1.mentions-me .mention.me").count() == 1
    b.screenshot("conversation-mention.png")
    no_script_errors(a, b)


# The tab is hidden and its reader allowed notifications: a stand-in for the
# Notification API records what the page shows.
HIDDEN_AND_ALLOWED = """
Object.defineProperty(document, "hidden", { get: () => true });
window.shown = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.shown.push([title, options.body]); }
};
"""


def test_a_mention_in_a_hidden_tab_becomes_a_notification(chromium, daphne, lobby, make_user):
    server = daphne()
    alice, bob = make_user("alice"), make_user("bob")
    a = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    b = open_tab(chromium, server, "/", user=bob)
    b.page.add_init_script(HIDDEN_AND_ALLOWED)
    b.goto("/rooms/lobby/")
    a.wait_state("connected")
    b.wait_state("connected")
    a.say("no mention here")
    a.say("@bob the descant, please")
    b.wait_body("@bob the descant, please")
    b.page.wait_for_function("() => window.shown.length > 0", timeout=WAIT_MS)
    assert b.page.evaluate("() => window.shown") == [["alice mentioned you in Lobby · Choir", "@bob the descant, please"]]
    no_script_errors(a, b)


def test_the_unread_badge_drops_after_reading(chromium, daphne, lobby, make_user):
    server = daphne()
    alice, bob = make_user("alice"), make_user("bob")
    post(lobby, alice, "before bob left")
    services.read_mark(room=lobby, reader=Singer(user=bob, name="bob"), seq=1)
    for n in range(3):
        post(lobby, alice, f"while bob was away {n}" + (" @bob" if n == 2 else ""))

    b = open_tab(chromium, server, "/", user=bob)
    card = b.page.locator(".room-card", has_text="Lobby")
    assert card.locator(".badge.unread").inner_text().startswith("3")
    assert card.locator(".badge.mention").inner_text().startswith("@1")
    b.screenshot("conversation-unread-badge.png")

    b.page.click("text=Lobby")
    b.wait_state("connected")
    divider = b.page.locator("#unread-divider")
    assert divider.inner_text() == "New since you were last here"
    assert b.page.evaluate("document.getElementById('unread-divider').nextElementSibling.id") == "m2"
    # Everything new is in view: the page sends `read`, and the title drops its count.
    b.page.wait_for_function("() => !document.title.startsWith('(')", timeout=WAIT_MS)
    b.screenshot("conversation-unread-read.png")
    for _ in range(50):
        if ReadMarker.objects.filter(room=lobby, user=bob, seq=4).exists():
            break
        b.page.wait_for_timeout(100)
    assert ReadMarker.objects.get(room=lobby, user=bob).seq == 4
    b.goto("/")
    assert b.page.locator(".room-card", has_text="Lobby").locator(".badge").count() == 0
    no_script_errors(b)


def test_search_finds_and_jumps_to_a_result_in_context(chromium, daphne, lobby, make_user):
    server = daphne(extra_env={"CHOIR_PAGE_MESSAGES": "10"})
    alice = make_user("alice")
    post(lobby, alice, "the harmony in bar twelve is hard")
    for n in range(30):
        post(lobby, alice, f"filler {n}")
    post(lobby, alice, "harmony again, near the end")
    tab = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    tab.wait_state("connected")
    tab.page.fill("#search-q", "harmony")
    tab.page.press("#search-q", "Enter")
    results = tab.page.locator("#search-results .result")
    results.first.wait_for(timeout=WAIT_MS)
    assert results.count() == 2
    tab.screenshot("conversation-search.png")

    # On the page: marked in place.
    results.nth(0).click()
    tab.page.wait_for_selector("#m32.at", timeout=WAIT_MS)
    assert tab.page.locator("#search-results").is_hidden()
    # Not on the page: the permalink opens it in context, server-rendered and marked.
    tab.page.fill("#search-q", "harmony")
    tab.page.press("#search-q", "Enter")
    results.nth(1).wait_for(timeout=WAIT_MS)
    results.nth(1).click()
    tab.page.wait_for_url("**/rooms/lobby/?at=1#m1", timeout=WAIT_MS)
    tab.page.wait_for_selector("#m1.at[aria-current='true']", timeout=WAIT_MS)
    assert tab.page.locator("#m1 .body").inner_text() == "the harmony in bar twelve is hard"
    tab.wait_state("connected")
    tab.page.wait_for_selector("#m32", timeout=WAIT_MS)  # the page continues after its own history
    # ...without scrolling the reader away from the message the link is for.
    assert tab.page.evaluate(IN_VIEW, "m1")
    tab.screenshot("conversation-permalink.png")
    no_script_errors(tab)


def test_the_permalink_page_reads_without_javascript(chromium, daphne, lobby, make_user):
    server = daphne()
    alice = make_user("alice")
    post(lobby, alice, "one **bold** <b>not bold</b>")
    post(lobby, alice, "two", reply_to=1)
    context = chromium.new_context(java_script_enabled=False, base_url=server.url)
    page = context.new_page()
    page.goto("/rooms/lobby/?at=1")
    assert page.locator("#m1.at").count() == 1
    assert page.locator("#m1 .body strong").inner_text() == "bold"
    assert page.locator("#m1 .body b").count() == 0
    assert page.locator("#m2 .quote .excerpt").inner_text() == "one **bold** <b>not bold</b>"
    context.close()


def test_a_room_with_replies_reactions_groups_and_days_on_desktop_and_phone(chromium, daphne, lobby, make_user):
    server = daphne()
    ann, bob, cleo, me = make_user("ann"), make_user("bob"), make_user("cleo"), make_user("dee")
    now = timezone.now()
    script = [
        (ann, "Good evening, choir! Tonight: the **Tallis canon**, then _Abide with me_.", 26 * 60),
        (ann, "Scores are at https://example.org/scores/tallis.pdf", 26 * 60 - 1),
        (bob, "I'll be ten minutes late, start without me.", 25 * 60),
        (cleo, "Which verse do we start from?", 40),
        (ann, "Verse two. Altos, breathe after `bar 12`.", 38),
        (ann, "@dee can you give the starting note?", 37),
        (me, "Of course: a G.", 30),
        (bob, "Sounds lovely from the back row", 5),
        (cleo, "Recording snippet:\n```\nsoprano: G A B c\nalto:    D E F# G\n```", 3),
    ]
    for user, body, minutes_ago in script:
        message = post(lobby, user, body, **({"reply_to": 4} if body.startswith("Verse two") else {}))
        Message.objects.filter(pk=message.pk).update(sent_at=now - timedelta(minutes=minutes_ago))
    for user, seq, emoji in [(bob, 1, "👍"), (cleo, 1, "👍"), (me, 1, "❤️"), (ann, 7, "🙏"), (me, 8, "😂")]:
        services.reaction_toggle(room=lobby, actor=Singer(user=user, name=user.username), seq=seq, emoji=emoji, on=True)
    services.read_mark(room=lobby, reader=Singer(user=me, name="dee"), seq=3)

    desk = open_tab(chromium, server, "/rooms/lobby/", user=me)
    desk.wait_state("connected")
    assert desk.page.locator("#messages li.day").count() == 2
    assert desk.page.locator("#m2.cont").count() == 1  # ann's second message, under her name
    assert desk.page.locator("#m5.cont").count() == 0  # a reply starts its own group
    desk.page.evaluate("() => { document.getElementById('scroller').scrollTop = 0; }")  # from yesterday's divider
    desk.page.wait_for_timeout(300)
    desk.screenshot("conversation-desktop.png")
    phone = open_tab(chromium, server, "/rooms/lobby/", user=me, viewport=PHONE)
    phone.wait_state("connected")
    phone.page.locator("#m9").scroll_into_view_if_needed()
    phone.page.wait_for_timeout(300)
    phone.screenshot("conversation-phone.png")
    no_script_errors(desk, phone)
