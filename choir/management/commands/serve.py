"""Serve Choir with Daphne: one process, or N sharing one listening socket.

The socket is bound here and handed to each Daphne worker with `--fd`, so the
kernel spreads new connections over the workers. A worker that dies is started
again; SIGTERM or SIGINT stops them all, and each says `closing` 1001 to its
sockets first (choir/runtime.py).

Workers write their metrics to a fresh PROMETHEUS_MULTIPROC_DIR per run, so a
scrape of /metrics, which reaches one worker, reports all of them.

Kept rather than a process manager, after weighing them: Daphne has no
multi-process mode of its own; honcho runs a Procfile's processes but
neither shares a listening socket nor restarts the dead; circus does both
but brings pyzmq, tornado, a daemon with a control socket and a config file;
supervisord's `fcgi-program` can hand Daphne a shared socket as `--fd 0`
(the Channels docs show it), and an operator who already runs supervisord
may use that instead (docs/operations.md). What this command adds is a
foreground process for `make run`, the tests and systemd, the Redis check
for several workers and the per-run metrics directory: about sixty lines
with no dependency.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from choir.conf import settings
from django.core.management.base import BaseCommand, CommandError


def daphne_args(fd: int) -> list[str]:
    """Daphne's command line for one worker, from settings."""
    args = [
        sys.executable,
        "-m",
        "daphne",
        "--fd",
        str(fd),
        "--ping-interval",
        str(settings.CHOIR_PING_INTERVAL),
        "--ping-timeout",
        str(settings.CHOIR_PING_TIMEOUT),
        "--websocket_connect_timeout",
        str(settings.CHOIR_HANDSHAKE_TIMEOUT),
        # Frames far over the protocol's limit are closed with 1009 before
        # they are buffered whole.
        "--websocket-max-message-size",
        str(settings.CHOIR_WS_MAX_MESSAGE_BYTES),
        "--websocket-max-frame-size",
        str(settings.CHOIR_WS_MAX_MESSAGE_BYTES),
        "--application-close-timeout",
        "10",
    ]
    if settings.CHOIR_PROXY_HEADERS:
        args.append("--proxy-headers")
    if not settings.CHOIR_ACCESS_LOG:
        args += ["--verbosity", "0"]
    args.append(asgi_target())
    return args


def asgi_target() -> str:
    """The project's ASGI_APPLICATION ("mysite.asgi.application") as Daphne spells it."""
    module, _, name = settings.ASGI_APPLICATION.rpartition(".")
    return f"{module}:{name}"


class Command(BaseCommand):
    help = "Serve the site with N Daphne workers sharing one listening socket."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")))

    def handle(self, *args: Any, host: str, port: int, workers: int, **options: Any) -> None:
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        if workers > 1 and not settings.CHOIR_REDIS_URLS:
            raise CommandError("several workers need a shared channel layer: a channels-redis CHANNEL_LAYERS (the site here: set REDIS_URL)")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
        sock.listen(2048)
        fd = sock.fileno()
        os.set_inheritable(fd, True)
        shown_host = f"[{host}]" if family == socket.AF_INET6 and not host.startswith("[") else host
        self.stdout.write(f"Choir at http://{shown_host}:{sock.getsockname()[1]}/ with {workers} Daphne worker(s)")
        self.stdout.flush()

        metrics_dir, own_metrics_dir = _fresh_metrics_dir()
        procs: list[subprocess.Popen] = [self._spawn(fd) for _ in range(workers)]
        # The webhook worker is one more supervised child, so `make run` delivers with no extra step.
        hooks = self._spawn_webhooks() if settings.CHOIR_WEBHOOKS_IN_SERVE else None
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not stopping:
                time.sleep(0.2)
                for index, proc in enumerate(procs):
                    if proc.poll() is not None and not stopping:
                        self.stderr.write(f"worker {proc.pid} exited with {proc.returncode}; starting another")
                        _forget_worker_metrics(proc.pid, metrics_dir)
                        time.sleep(0.5)
                        procs[index] = self._spawn(fd)
                if hooks is not None and hooks.poll() is not None and not stopping:
                    self.stderr.write(f"webhook worker {hooks.pid} exited with {hooks.returncode}; starting another")
                    time.sleep(0.5)
                    hooks = self._spawn_webhooks()
        finally:
            # Our copy of the listening socket goes first, and each worker stops
            # listening as it begins to shut down (choir/runtime.py): once they
            # have, new connections are refused at once rather than queued for
            # workers that will never accept them.
            sock.close()
            if hooks is not None:
                procs.append(hooks)
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            if own_metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)

    def _spawn(self, fd: int) -> subprocess.Popen:
        return subprocess.Popen(daphne_args(fd), pass_fds=[fd])

    def _spawn_webhooks(self) -> subprocess.Popen:
        # The settings module reached this process through DJANGO_SETTINGS_MODULE, which the child inherits.
        return subprocess.Popen([sys.executable, "-m", "django", "choir_webhooks"])


def _fresh_metrics_dir() -> tuple[str, bool]:
    """The directory for this run's multiprocess metrics, emptied; (path, made here).

    Left-over files from an earlier run would be added to this run's counters,
    so an operator's PROMETHEUS_MULTIPROC_DIR is emptied and a temporary one is
    removed on exit.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
        return path, False
    path = tempfile.mkdtemp(prefix="choir-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path, True


def _forget_worker_metrics(pid: int, path: str) -> None:
    """Drop a dead worker's live gauges (its sockets are gone); counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)
