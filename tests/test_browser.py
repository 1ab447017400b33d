"""The room page in headless Chromium against a real Daphne server."""

from __future__ import annotations

import pytest

from choir import services
from choir.access import Singer
from choir.models import Message
from tests.browser_support import PHONE, WAIT_MS, chromium, open_tab  # noqa: F401  (chromium is a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "<script>alert('script ran')</script>"


def post_as(room, name: str, body: str):
    """Post from outside the page (another process, in effect), through the real write path."""
    return services.message_post(room=room, singer=Singer(user=None, name=name, guest_key="other"), body=body)


def no_script_errors(*tabs) -> None:
    for tab in tabs:
        assert tab.errors == [], tab.errors
        assert tab.dialogs == [], f"a dialog opened: {tab.dialogs}"


def test_two_pages_in_one_room_see_each_others_messages_in_order(chromium, daphne, lobby, make_user):
    server = daphne()
    alice, bob = make_user("alice"), make_user("bob")
    a = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    b = open_tab(chromium, server, "/rooms/lobby/", user=bob)
    a.wait_state("connected")
    b.wait_state("connected")

    for text in ("one", "two", "three"):
        a.say(text)
    b.wait_body("three")
    assert b.bodies() == ["one", "two", "three"]
    assert b.authors() == ["alice"] * 3
    assert b.seqs() == [1, 2, 3]

    b.page.type("#body", "hi alice")
    a.page.wait_for_selector("#typing:has-text('bob is typing')", timeout=WAIT_MS)
    b.page.press("#body", "Enter")
    a.wait_body("hi alice")
    assert a.authors() == ["alice", "alice", "alice", "bob"]
    assert a.page.locator("#pending li").count() == 0
    a.page.wait_for_selector("#online li:has-text('bob')", timeout=WAIT_MS)

    a.say("Sing along at https://example.com/songs?id=1. Not javascript:alert(1)")
    a.wait_body("Sing along at https://example.com/songs?id=1. Not javascript:alert(1)")
    a.screenshot("room-page.png")
    phone = open_tab(chromium, server, "/rooms/lobby/", user=bob, viewport=PHONE)
    phone.wait_state("connected")
    phone.screenshot("room-page-phone.png")
    b.goto("/")
    b.page.wait_for_selector(".room-card .online:has-text('online')")
    b.screenshot("room-list.png")
    no_script_errors(a, b, phone)


def test_links_are_clickable_only_for_http_and_open_safely(chromium, daphne, lobby):
    server = daphne()
    post_as(lobby, "ann", "see https://example.com/a_(b), http://example.org. and javascript:alert(1) data:text/html,x")
    tab = open_tab(chromium, server, "/rooms/lobby/")
    tab.wait_state("connected")
    links = tab.page.eval_on_selector_all("#messages .body a", "els => els.map(a => [a.getAttribute('href'), a.rel, a.target])")
    assert links == [
        ["https://example.com/a_(b)", "noopener noreferrer nofollow", "_blank"],
        ["http://example.org/", "noopener noreferrer nofollow", "_blank"],
    ]
    no_script_errors(tab)


def test_the_page_survives_a_server_restart_and_shows_what_was_missed_once(chromium, daphne, lobby, make_user):
    server = daphne()
    post_as(lobby, "ann", "before the outage")
    tab = open_tab(chromium, server, "/rooms/lobby/", user=make_user("alice"))
    tab.wait_state("connected")

    server.stop()
    tab.wait_state("reconnecting")
    assert "Reconnecting" in tab.status().inner_text()
    post_as(lobby, "bob", "during the outage 1")
    post_as(lobby, "bob", "during the outage 2")
    server.start()

    tab.wait_state("connected", timeout=40_000)
    tab.wait_body("during the outage 2")
    post_as(lobby, "bob", "after the outage")  # live again, not just replayed
    tab.wait_body("after the outage")
    assert tab.bodies() == ["before the outage", "during the outage 1", "during the outage 2", "after the outage"]
    assert tab.seqs() == [1, 2, 3, 4]
    no_script_errors(tab)


def test_a_message_sent_while_offline_is_delivered_once_after_reconnect(chromium, daphne, lobby, make_user):
    server = daphne()
    alice = make_user("alice")
    tab = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    tab.wait_state("connected")

    server.stop()
    tab.wait_state("reconnecting")
    tab.say("sung into the void")
    pending = tab.page.locator("#pending li")
    assert pending.count() == 1
    assert "waiting for the connection" in pending.inner_text()
    server.start()

    tab.wait_body("sung into the void", timeout=40_000)
    tab.page.wait_for_selector("#pending li", state="detached", timeout=WAIT_MS)
    assert tab.bodies() == ["sung into the void"]
    assert Message.objects.filter(room=lobby, body="sung into the void").count() == 1
    no_script_errors(tab)


def test_markup_in_bodies_is_text_on_the_room_page_and_in_admin(chromium, daphne, lobby, make_user):
    server = daphne()
    post_as(lobby, "ann", XSS_IMG)  # server-rendered first paint
    alice = make_user("alice")
    tab = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    tab.wait_state("connected")
    tab.say(XSS_SCRIPT)  # rendered live by the client
    tab.wait_body(XSS_SCRIPT)
    post_as(lobby, "bob", XSS_IMG + " live")  # and a live frame from someone else
    tab.wait_body(XSS_IMG + " live")
    assert tab.bodies() == [XSS_IMG, XSS_SCRIPT, XSS_IMG + " live"]
    assert tab.page.locator("#messages img, #messages script, #pending img").count() == 0

    staff = make_user("root", is_staff=True, is_superuser=True)
    admin = open_tab(chromium, server, "/admin/choir/message/", user=staff)
    rows = admin.page.locator("#result_list tbody tr")
    assert rows.count() == 3
    text = admin.page.locator("#result_list").inner_text()
    assert XSS_IMG in text and XSS_SCRIPT in text
    assert admin.page.locator("#result_list img, #result_list script").count() == 0
    no_script_errors(tab, admin)


def test_scroll_back_loads_older_pages_without_duplicates(chromium, daphne, lobby):
    server = daphne(extra_env={"CHOIR_PAGE_MESSAGES": "20"})
    for n in range(1, 76):
        post_as(lobby, "ann", f"verse {n}")
    tab = open_tab(chromium, server, "/rooms/lobby/")
    tab.wait_state("connected")
    # The first page is the last 20; grouped messages are short, so the page
    # may already have filled the screen with more.
    # One read: the page may load an older page between two.
    seqs = tab.seqs()
    assert seqs[-20:] == list(range(56, 76)) and seqs == list(range(seqs[0], 76))

    for _ in range(10):
        if tab.seqs()[0] == 1:
            break
        first = tab.seqs()[0]
        tab.page.eval_on_selector("#scroller", "s => { s.scrollTop = 0; }")
        tab.page.wait_for_function(
            "first => Number(document.querySelector('#messages li[data-seq]').dataset.seq) < first", arg=first, timeout=WAIT_MS
        )
    assert tab.seqs() == list(range(1, 76))
    assert tab.bodies() == [f"verse {n}" for n in range(1, 76)]
    tab.page.wait_for_selector("#older:has-text('start of the room')", timeout=WAIT_MS)
    no_script_errors(tab)


def test_a_guest_where_guests_may_not_post_cannot_post_and_is_told_why(chromium, daphne, make_room):
    make_room("hall", guests_may_post=False)
    server = daphne()
    tab = open_tab(chromium, server, "/rooms/hall/")
    tab.wait_state("connected")
    assert tab.page.locator("#body").count() == 0
    why = tab.page.locator("#cannot-post")
    assert why.is_visible()
    assert "Guests may not post in this room: sign in to sing" in why.inner_text()
    tab.screenshot("room-page-guest-refused.png")
    # The server refuses it too, whatever the page shows.
    refusal = tab.page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/rooms/hall/`);
            ws.onopen = () => ws.send(JSON.stringify({type: "say", body: "let me in", client_id: "c1"}));
            ws.onmessage = (e) => { const f = JSON.parse(e.data); if (f.type === "error" || f.type === "message") resolve(f); };
        })"""
    )
    assert refusal["type"] == "error" and refusal["code"] == "forbidden"
    assert not Message.objects.filter(body="let me in").exists()
    no_script_errors(tab)


def test_a_guest_picks_a_name_then_sings_under_it(chromium, daphne, lobby):
    server = daphne()
    tab = open_tab(chromium, server, "/rooms/lobby/")
    tab.page.fill("#guest-name", "Robin")
    with tab.page.expect_navigation():
        tab.page.click("form.guest-name button[type=submit]")
    tab.wait_state("connected")
    tab.say("a guest verse")
    tab.wait_body("a guest verse")
    assert tab.authors() == ["Robin (guest)"]
    no_script_errors(tab)


def test_edit_and_delete_own_messages_reach_other_pages(chromium, daphne, lobby, make_user):
    server = daphne()
    alice, bob = make_user("alice"), make_user("bob")
    a = open_tab(chromium, server, "/rooms/lobby/", user=alice)
    b = open_tab(chromium, server, "/rooms/lobby/", user=bob)
    a.wait_state("connected")
    b.wait_state("connected")
    a.say("frist")
    a.say("oops")
    b.wait_body("oops")
    assert b.page.locator("#m1 .actions").count() == 0  # not bob's to change

    a.page.click("#m1 .actions button:has-text('Edit')")
    a.page.fill("#edit-1", "first")
    a.page.press("#edit-1", "Enter")
    a.page.click("#m2 .actions button:has-text('Delete')")
    a.page.click("#m2 .actions button:has-text('Really delete?')")

    b.page.wait_for_selector("#m2.deleted", timeout=WAIT_MS)
    b.page.wait_for_selector("#m1 .edited", timeout=WAIT_MS)
    assert b.bodies() == ["first", "(deleted)"]
    no_script_errors(a, b)


def test_a_closed_room_says_so_and_does_not_reconnect(chromium, daphne, make_room):
    hall = make_room("hall", guests_may_post=True)
    services.room_archive(room=hall, actor=services.SYSTEM)
    server = daphne()
    tab = open_tab(chromium, server, "/rooms/hall/")
    tab.wait_state("stopped")
    assert "This room was closed" in tab.status().inner_text()
    assert tab.page.locator("#retry-now").is_visible()
    # The first reconnect would come within a second; give it three.
    tab.page.wait_for_timeout(3000)
    assert len(tab.sockets) == 1
    no_script_errors(tab)


def test_more_missed_than_the_replay_limit_is_filled_from_the_history_api(chromium, daphne, lobby, make_user):
    server = daphne(extra_env={"CHOIR_REPLAY_LIMIT": "3"})
    post_as(lobby, "ann", "verse 1")
    tab = open_tab(chromium, server, "/rooms/lobby/", user=make_user("alice"))
    tab.wait_state("connected")
    server.stop()
    tab.wait_state("reconnecting")
    for n in range(2, 13):
        post_as(lobby, "bob", f"verse {n}")
    history_calls: list[str] = []
    tab.page.on("request", lambda r: history_calls.append(r.url) if "/api/rooms/lobby/messages" in r.url else None)
    server.start()
    tab.wait_body("verse 12", timeout=40_000)
    # The socket replayed 10..12 and said `truncated` 2..9; the page fetched those.
    assert tab.bodies() == [f"verse {n}" for n in range(1, 13)]
    assert tab.seqs() == list(range(1, 13))
    assert any("after=1" in url for url in history_calls), history_calls
    no_script_errors(tab)
