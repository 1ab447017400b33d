"""The servers under test, and the Redis and PostgreSQL they lean on.

Each target is started fresh for each scenario on a free loopback port and
stopped after it, so no backlog or memory carries from one scenario to the next.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_socket() -> socket.socket:
    """A bound loopback socket with a deep backlog, as `manage.py serve` makes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    os.set_inheritable(sock.fileno(), True)
    return sock


def _stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def websocket_ready(
    port: int, path: str, timeout: float, proc: subprocess.Popen, log: Path, origin: bool = False
) -> None:
    """Wait until a WebSocket handshake on `path` succeeds."""
    from websockets.sync.client import connect

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            kwargs: dict[str, Any] = {"origin": f"http://127.0.0.1:{port}"} if origin else {}
            with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=2, compression=None, **kwargs):
                return
        except Exception as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} not ready within {timeout}s ({last!r}); see {log}")


# Backing services -----------------------------------------------------------


class Redis:
    """A private redis-server on a free port: nothing shared, nothing kept."""

    def __init__(self, out: Path) -> None:
        self.port = free_port()
        self.log = out / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--maxclients",
                "10000",
                "--logfile",
                str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start; see {self.log}")

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()

    def stop(self) -> None:
        _stop(self.proc)


class Database:
    """The benchmark's own PostgreSQL database, dropped and created per run."""

    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url = admin_url  # any database on the server, to create ours from
        self.name = name
        base, _, _ = admin_url.rpartition("/")
        self.url = f"{base}/{name}"

    def recreate(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def setup(self, rooms: list[str], env: dict[str, str], log: Path) -> None:
        """Migrate and create the rooms through Choir's own service layer."""
        with open(log, "ab") as out:
            subprocess.run(
                [PY, "-m", "bench.dbsetup", *rooms],
                cwd=ROOT,
                env={**env, "DATABASE_URL": self.url},
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )

    def stage_conductor(self, slug: str, env: dict[str, str], log: Path) -> str:
        """Make `slug` a stage room with a signed-in conductor; the session cookie's value."""
        run = subprocess.run(
            [PY, "-m", "bench.dbsetup", "--stage", slug],
            check=False,
            cwd=ROOT,
            env={**env, "DATABASE_URL": self.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        with open(log, "a") as out:
            out.write(run.stdout + run.stderr)
        keys = [line.split("=", 1)[1] for line in run.stdout.splitlines() if line.startswith("session=")]
        if run.returncode != 0 or not keys:
            raise RuntimeError(f"could not set up the stage's conductor; see {log}")
        return keys[-1]

    def room_seqs(self, slug: str) -> dict[str, int]:
        """What the database holds for one room: is it 1..N with no gaps?"""
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                "SELECT r.last_seq, count(m.id), count(DISTINCT m.seq), "
                "coalesce(min(m.seq), 0), coalesce(max(m.seq), 0) "
                "FROM choir_room r LEFT JOIN choir_message m ON m.room_id = r.id WHERE r.slug = %s GROUP BY r.id",
                [slug],
            ).fetchone()
        last_seq, count, distinct, low, high = row or (0, 0, 0, 0, 0)
        gap_free = count == distinct == last_seq and (count == 0 or (low == 1 and high == count))
        return {
            "last_seq": last_seq,
            "stored": count,
            "distinct": distinct,
            "min": low,
            "max": high,
            "gap_free": gap_free,
        }

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# Servers under test ---------------------------------------------------------


class Target:
    name = ""
    label = ""
    dialect = ""
    stores = False
    ready_path = "/ws/rooms/bench-ready/"

    def __init__(self, out: Path, env: dict[str, str]) -> None:
        self.out = out
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = out / f"server-{self.name}.log"
        self._log: IO[bytes] | None = None

    def command(self, sock: socket.socket) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> None:
        sock = listening_socket()
        self.port = sock.getsockname()[1]
        args, env = self.command(sock)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **env, "PYTHONPATH": str(ROOT)},
            pass_fds=[sock.fileno()],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sock.close()  # the server holds its own copy
        websocket_ready(self.port, self.ready_path, 60, self.proc, self.log_path, origin=self.dialect == "channels")

    def stop(self) -> None:
        _stop(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def serving(self) -> procstat.Selector:
        """The processes that serve sockets (for RSS per socket)."""
        return procstat.pids(self.pid)


class Choir(Target):
    name = "choir"
    label = "Choir"
    dialect = "choir"
    stores = True
    ready_path = "/ws/rooms/bench-ready/"

    def __init__(self, out: Path, env: dict[str, str], *, workers: int = 1) -> None:
        super().__init__(out, env)
        self.workers = workers

    def start(self) -> None:
        # `manage.py serve` binds its own socket; it cannot take ours.
        self.port = free_port()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PY, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        websocket_ready(self.port, self.ready_path, 60, self.proc, self.log_path)
        time.sleep(0.3 * (self.workers - 1))  # let late workers reach accept()

    def serving(self) -> procstat.Selector:
        # The Daphne workers: the supervisor only waits on them, and the
        # webhook worker it also supervises holds no socket.
        workers = procstat.children_of(self.pid)
        return lambda stats: [pid for pid in workers(stats) if procstat.cmdline_has(pid, b"daphne")]

    def worker_pids(self) -> list[int]:
        return self.serving()(procstat.all_stats())


class Raw(Target):
    name = "raw"
    label = "raw websockets"
    dialect = "raw"

    def start(self) -> None:
        self.port = free_port()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PY, "-m", "bench.ref_raw", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        websocket_ready(self.port, self.ready_path, 30, self.proc, self.log_path)


def daphne_on(sock: socket.socket, application: str) -> list[str]:
    """A quiet Daphne serving `application` on an inherited listening socket."""
    return [PY, "-m", "daphne", "--fd", str(sock.fileno()), "--verbosity", "0", application]


class BareAsgi(Target):
    name = "asgi"
    label = "bare ASGI on Daphne"
    dialect = "asgi"

    def command(self, sock: socket.socket) -> tuple[list[str], dict[str, str]]:
        return daphne_on(sock, "bench.ref_asgi:application"), {}


class TutorialChannels(Target):
    name = "channels"
    label = "Channels tutorial"
    dialect = "channels"

    def __init__(self, out: Path, env: dict[str, str], *, redis_url: str) -> None:
        super().__init__(out, env)
        self.redis_url = redis_url

    def command(self, sock: socket.socket) -> tuple[list[str], dict[str, str]]:
        env = {"DJANGO_SETTINGS_MODULE": "bench.ref_channels_settings", "BENCH_REDIS_URL": self.redis_url}
        return daphne_on(sock, "bench.ref_channels:application"), env


# Peers: the servers people pick instead -------------------------------------


class Unavailable(RuntimeError):
    """A peer cannot run on this machine; the message says why (it goes in the report)."""


NODE_DIR = ROOT / "bench" / "node"
NODE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "choir-bench" / "node"


def node_modules(cache: Path, log: Path) -> Path:
    """The Node peers' packages, installed with `npm ci` from bench/node's lock file into `cache`.

    Keyed by the lock file's hash, so a changed pin installs afresh; never part
    of the site, never committed.
    """
    import hashlib
    import shutil

    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise Unavailable(f"{'node' if node is None else 'npm'} is not installed")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    home = cache / hashlib.sha256(lock).hexdigest()[:12]
    done = home / "node_modules" / ".bench-installed"
    if done.exists():
        return home / "node_modules"
    home.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(NODE_DIR / name, home / name)
    with open(log, "ab") as out:
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                check=False,
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"npm ci took over 300 s in {home}; see {log}") from None
    if result.returncode != 0:
        raise Unavailable(f"npm ci failed ({result.returncode}) in {home}; see {log}")
    done.touch()
    return home / "node_modules"


def python_socketio_missing() -> str | None:
    """Why the python-socketio peer cannot run, or None."""
    import importlib.util

    for module in ("socketio", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -r requirements-dev.txt)"
    return None


SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket&room={room}"


class _NodePeer(Target):
    script = ""

    def __init__(self, out: Path, env: dict[str, str], *, modules: Path) -> None:
        super().__init__(out, env)
        self.modules = modules

    def start(self) -> None:
        self.port = free_port()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / self.script), str(self.port)],
            cwd=ROOT,
            env={**self.env, "NODE_PATH": str(self.modules), "NODE_ENV": "production"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        websocket_ready(self.port, self.ready_path, 30, self.proc, self.log_path)


class NodeWs(_NodePeer):
    name = "ws"
    label = "Node ws"
    dialect = "raw"
    script = "ws_relay.js"


class NodeSocketIO(_NodePeer):
    name = "socketio"
    label = "Node Socket.IO"
    dialect = "socketio"
    script = "socketio_relay.js"
    ready_path = SOCKETIO_PATH.format(room="bench-ready")


class PySocketIO(Target):
    name = "pysocketio"
    label = "python-socketio/uvicorn"
    dialect = "socketio"
    ready_path = SOCKETIO_PATH.format(room="bench-ready")

    def start(self) -> None:
        # uvicorn's --fd takes the socket for AF_UNIX; a port of its own is simpler.
        self.port = free_port()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "uvicorn",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--backlog",
                "2048",
                "bench.ref_socketio:app",
            ],
            cwd=ROOT,
            env={**self.env, "PYTHONPATH": str(ROOT)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        websocket_ready(self.port, self.ready_path, 30, self.proc, self.log_path)
