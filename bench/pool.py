"""The orchestrator's side of the client processes."""

from __future__ import annotations

import multiprocessing
from typing import Any

from bench import client


class WorkerDied(RuntimeError):
    pass


class ClientPool:
    """N client processes talking to one server; commands go to all of them at once."""

    def __init__(
        self,
        *,
        port: int,
        dialect: str,
        processes: int,
        body_bytes: int,
        concurrency: int,
        sources: list[str] | None = None,
        cookie: str | None = None,
        per_message: bool = False,
        lean: bool = False,
    ) -> None:
        # Fork: the orchestrator has imported nothing heavy, and spawning
        # re-imports for a second or so per process.
        ctx = multiprocessing.get_context("fork")
        self.conns = []
        self.procs = []
        for index in range(processes):
            parent, child = ctx.Pipe()
            spec = client.Spec(
                port=port,
                dialect=dialect,
                worker=index,
                body_bytes=body_bytes,
                concurrency=concurrency,
                source=sources[index % len(sources)] if sources else None,
                cookie=cookie,
                per_message=per_message,
                lean=lean,
            )
            proc = ctx.Process(target=client.main, args=(child, spec), name=f"bench-client-{index}", daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def __len__(self) -> int:
        return len(self.procs)

    def call(self, command: str, per_worker: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        for conn, args in zip(self.conns, per_worker):
            conn.send((command, args))
        replies = []
        for index, conn in enumerate(self.conns):
            # Each worker bounds its own work; this only catches a dead one.
            if not conn.poll(timeout):
                raise WorkerDied(f"client {index} did not answer {command!r} within {timeout:.0f}s")
            _kind, reply = conn.recv()
            replies.append(reply)
        return replies

    def call_all(self, command: str, args: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        return self.call(command, [args] * len(self), timeout)

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close", {}))
            except OSError:
                pass
        for conn, proc in zip(self.conns, self.procs):
            try:
                if conn.poll(15):
                    conn.recv()
            except (OSError, EOFError):
                pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
