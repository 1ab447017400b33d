"""`python -m choir.client URL`: follow a room, print its messages, post the lines typed (or piped) in.

    python -m choir.client http://127.0.0.1:8000/rooms/lobby/
    echo "Deployed $(git rev-parse --short HEAD)" | CHOIR_TOKEN=... python -m choir.client wss://choir.example.com/rooms/ops/

When standard input ends, the command waits for its posts to be acknowledged
and exits (0, or 1 if a line was refused); with --follow it keeps printing
until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
from typing import Any

from choir.client.errors import ChoirError, Refused
from choir.client.room import RoomClient


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m choir.client", description="Follow a Choir room and post lines from stdin.")
    parser.add_argument("url", help="the room's page or socket URL, e.g. http://127.0.0.1:8000/rooms/lobby/")
    parser.add_argument("--token", default=os.environ.get("CHOIR_TOKEN"), help="API token (default: $CHOIR_TOKEN); none: a guest")
    parser.add_argument("--token-in-query", action="store_true", help="send the token as ?token= instead of a header")
    parser.add_argument("--name", help="a guest's name")
    parser.add_argument("--after", type=int, help="print messages after this seq first (0: the whole history)")
    parser.add_argument("--follow", action="store_true", help="keep following after standard input ends")
    parser.add_argument("--json", action="store_true", help="print each message frame as one JSON line")
    return parser.parse_args(argv)


def line_for(message: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(message, ensure_ascii=False)
    return f"#{message['seq']} {message.get('author', '?')}: {message.get('body', '')}"


def stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Standard input, line by line, read on a daemon thread (a blocked read never holds up exit)."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="choir-client-stdin", daemon=True).start()
    return queue


async def post_lines(room: RoomClient, lines: asyncio.Queue[str | None]) -> int:
    refused = 0
    while (line := await lines.get()) is not None:
        if not line.strip():
            continue
        try:
            await room.say(line)
        except Refused as exc:
            refused += 1
            print(f"refused: {exc}", file=sys.stderr, flush=True)
    return refused


async def print_messages(room: RoomClient, as_json: bool) -> None:
    async for message in room:
        print(line_for(message, as_json), flush=True)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    room = RoomClient(args.url, token=args.token, token_in_query=args.token_in_query, name=args.name, after=args.after)
    try:
        await room.start()
    except ChoirError as exc:
        print(f"choir: {exc}", file=sys.stderr)
        return 1
    printer = asyncio.create_task(print_messages(room, args.json))
    poster = asyncio.create_task(post_lines(room, stdin_lines(asyncio.get_running_loop())))
    status = 0
    try:
        done, _ = await asyncio.wait({printer, poster}, return_when=asyncio.FIRST_COMPLETED)
        if poster in done:
            status = 1 if poster.result() else 0
            if not args.follow:
                # Closing ends the iterator after what it already holds, our own
                # acknowledged lines among them: they print, then the printer stops.
                await room.close()
            await printer
        else:
            await printer  # the room ended for this client: raises why
    except ChoirError as exc:
        print(f"choir: {exc}", file=sys.stderr)
        status = 1
    finally:
        await room.close()
        for task in (printer, poster):
            task.cancel()
        await asyncio.gather(printer, poster, return_exceptions=True)
    return status


def run() -> None:
    logging.basicConfig(level=logging.WARNING, format="choir: %(message)s")
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
