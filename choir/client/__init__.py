"""A Python client for Choir rooms (asyncio, on the `websockets` library).

    from choir.client import RoomClient

    async with RoomClient("ws://127.0.0.1:8000/ws/rooms/lobby/", token="...") as room:
        await room.say("The build is green")
        async for message in room:
            print(message["seq"], message["author"], message["body"])

It never imports Django, so a script needs no settings: install `django-choir[client]`.
docs/client.md describes it; `python -m choir.client URL` is its command line.
"""

from choir.client.backoff import Backoff
from choir.client.errors import ChoirError, Closed, Refused
from choir.client.room import RoomClient
from choir.client.urls import socket_url

__all__ = ["Backoff", "ChoirError", "Closed", "Refused", "RoomClient", "socket_url"]
