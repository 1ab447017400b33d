"""A commit hook never waits on a stopped event loop (issue 12, item 11), and the shared reads work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async

from choir import broadcast, events, presence, redis_clients


@pytest.mark.django_db(transaction=True)
def test_a_commit_hook_on_a_database_thread_does_not_wait_for_its_stopped_loop():
    # As at shutdown: a database thread of the serving loop commits after the
    # loop has stopped (not closed). async_to_sync would schedule onto that
    # loop and wait for ever; the send must return within its deadline.
    loop = asyncio.new_event_loop()

    async def sink(event: dict) -> None:
        return None

    broadcast.add_local_sink(loop, sink)
    took: list[float] = []
    done = threading.Event()

    def database_thread() -> None:
        loop.call_soon_threadsafe(loop.stop)
        while loop.is_running():
            time.sleep(0.01)
        started = time.monotonic()
        broadcast.send(1, events.update('{"type":"deleted","room":"x","seq":1}'))
        took.append(time.monotonic() - started)
        done.set()

    try:
        task = loop.create_task(sync_to_async(database_thread, thread_sensitive=False)())
        loop.run_forever()
        assert done.wait(10), "broadcast.send waited on the stopped loop"
        assert took[0] < 5
        loop.run_until_complete(task)
    finally:
        broadcast.remove_local_sink(loop)
        loop.close()


async def test_presence_is_read_through_one_api_sorted_with_counts(settings):
    settings.CHOIR_REDIS_URLS = []  # this process's own store
    store = presence.LocalPresence()
    try:
        await store.apply(7, added={"bo", "Ann", "cy"}, removed=set())
        assert presence.online([7, 8]) == {7: ["Ann", "bo", "cy"], 8: []}
        assert presence.online_counts([7, 8]) == {7: 3, 8: 0}
    finally:
        await store.close()
    assert presence.online([7]) == {7: []}


async def test_presence_read_api_reads_what_every_process_wrote_to_redis(uses_redis):
    from choir.conf import settings as choir_settings

    writers = [presence.RedisPresence(choir_settings.CHOIR_REDIS_URLS, choir_settings.CHOIR_REDIS_PREFIX) for _ in range(2)]
    try:
        await writers[0].apply(90_001, added={"bo", "Ann"}, removed=set())
        await writers[1].apply(90_001, added={"Ann", "cy"}, removed=set())
        online = await asyncio.to_thread(presence.online, [90_001])
        assert online == {90_001: ["Ann", "bo", "cy"]}
        assert await asyncio.to_thread(presence.online_counts, [90_001]) == {90_001: 3}
    finally:
        for writer in writers:
            await writer.apply(90_001, added=set(), removed={"bo", "Ann", "cy"})
        await redis_clients.close_async_clients()


async def test_redis_presence_counts_a_name_once_and_keeps_it_while_another_process_holds_it(uses_redis, settings):
    # The store answers each batch with the count and with which departed
    # names another live process still holds, without reading the room whole.
    from choir.conf import settings as choir_settings

    settings.CHOIR_PRESENCE_TTL = 1  # seconds: long enough for the steps below, short enough to watch a lapse
    room = 90_002
    a, b = (presence.RedisPresence(choir_settings.CHOIR_REDIS_URLS, choir_settings.CHOIR_REDIS_PREFIX) for _ in range(2))
    try:
        assert await a.apply(room, added={"ann", "bo"}, removed=set()) == (2, set())
        assert await b.apply(room, added={"ann", "cy"}, removed=set()) == (3, set())
        assert await a.apply(room, added=set(), removed={"ann", "bo"}) == (2, {"ann"})  # b still holds ann
        assert await b.names(room) == {"ann", "cy"}
        assert await b.apply(room, added=set(), removed={"ann"}) == (1, set())
        # b stops refreshing (it died): its cy lapses; a refreshes, so its dee stays.
        await a.apply(room, added={"dee"}, removed=set())
        await asyncio.sleep(1.2)
        await a.refresh({room: {"dee"}})
        assert await a.names(room) == {"dee"}
        assert await asyncio.to_thread(presence.online_counts, [room]) == {room: 1}
    finally:
        for store in (a, b):
            await store.apply(room, added=set(), removed={"ann", "bo", "cy", "dee"})
        await redis_clients.close_async_clients()


async def test_redis_clients_are_shared_per_url_and_per_loop():
    url = "redis://127.0.0.1:6379/0"
    assert redis_clients.sync_client(url) is redis_clients.sync_client(url)
    client = redis_clients.async_client(url)
    assert redis_clients.async_client(url) is client
    await redis_clients.close_async_clients()
    assert redis_clients.async_client(url) is not client
    await redis_clients.close_async_clients()
