"""End to end: `manage.py serve` (what `make run` runs) delivers webhooks with no extra step."""

import asyncio
import json
import time

import pytest
import websockets
from channels.db import database_sync_to_async

from choir.models import WebhookEndpoint
from tests.test_webhooks import SECRET, Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def test_serve_runs_the_delivery_worker_and_a_receiver_gets_socket_posts_in_order(daphne, lobby):
    receiver = Receiver(lambda n, event: 500 if n == 0 else 200).start()
    try:
        await database_sync_to_async(WebhookEndpoint.objects.create)(url=receiver.url, secret=SECRET)
        server = daphne(extra_env={
            "CHOIR_WEBHOOKS_IN_SERVE": "1", "CHOIR_WEBHOOK_POLL": "0.2", "CHOIR_WEBHOOK_RETRY_BASE": "0.2",
        })
        ws = await websockets.connect(server.ws("lobby"))
        for n in range(5):
            await ws.send(json.dumps({"type": "say", "body": f"m{n}", "client_id": f"c{n}"}))
        deadline = time.monotonic() + 30
        while len(receiver.accepted()) < 5:
            assert time.monotonic() < deadline, receiver.requests
            await asyncio.sleep(0.1)
        assert [e["data"]["seq"] for e in receiver.accepted()] == [1, 2, 3, 4, 5]
        assert receiver.requests[0]["answer"] == 500  # the first was retried
        await ws.close()
    finally:
        receiver.stop()
