"""The installable app: a throwaway host project installs the built wheel into a fresh virtualenv and has rooms.

Nothing of this repository is importable in the host: it runs from its own
directory with the wheel in its own virtualenv. Dependencies come from a
wheelhouse in var/ (filled from PyPI on the first run, offline afterwards),
held to the versions requirements.txt pins. The host keeps its own SQLite
file; its channel layer is in memory (one worker), or in the PostgreSQL +
Redis pass channels-redis with two workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.support import ROOT, free_port, need

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

WHEELHOUSE = ROOT / "var" / "wheelhouse"

SETTINGS = '''
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "host-project-test-key"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "choir",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "hostproj.urls"
ASGI_APPLICATION = "hostproj.asgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "host.sqlite3"}}
CHANNEL_LAYERS = CHANNEL_LAYERS_HERE
STATIC_URL = "static/"
USE_TZ = True
'''

URLS = '''
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("choir.urls")),
    path("admin/", admin.site.urls),
]
'''

ASGI = '''
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostproj.settings")
django_asgi_app = get_asgi_application()

from choir.asgi import choir_application  # noqa: E402

application = choir_application(django_asgi_app)
'''

MANAGE = '''
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostproj.settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
'''


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None
) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, input=input)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def build_wheel(tmp: Path) -> Path:
    """Build from a copy holding only what the wheel is made of, so the tree stays clean."""
    source = tmp / "source"
    source.mkdir()
    shutil.copytree(ROOT / "choir", source / "choir", ignore=shutil.ignore_patterns("__pycache__", "bench"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(dist)],
        cwd=source, capture_output=True, text=True, timeout=300,
    )
    need(built.returncode == 0, f"could not build the wheel (setuptools from PyPI?): {built.stderr[-500:]}")
    (wheel,) = dist.glob("django_choir-*.whl")
    return wheel


def constraints(tmp: Path) -> Path:
    """requirements.txt's pins as pip constraints (which may not carry extras)."""
    pins = [re.sub(r"\[.*?\]", "", line) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line]
    path = tmp / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def install(venv_python: Path, wheel: Path, cwd: Path) -> None:
    pins = str(constraints(cwd.parent))
    offline = [str(venv_python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELHOUSE),
               "-c", pins, f"{wheel}[client]"]
    if subprocess.run(offline, cwd=cwd, capture_output=True, timeout=300).returncode == 0:
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(
        [str(venv_python), "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE), "-c", pins, f"{wheel}[client]"],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )
    need(fetched.returncode == 0, f"the app's dependencies are neither in {WHEELHOUSE} nor on PyPI: {fetched.stderr[-500:]}")
    (WHEELHOUSE / wheel.name).unlink(missing_ok=True)  # the wheelhouse keeps dependencies, never a stale build of the app
    run(offline, cwd)


def host_layer() -> tuple[dict, int]:
    """The host's channel layer and worker count: in memory and one worker, or in the
    PostgreSQL + Redis pass, channels-redis (under this run's prefix) and two workers."""
    from django.conf import settings

    if not settings.REDIS_URLS:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}, 1
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] + "-host"
    layer = {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": settings.REDIS_URLS, "prefix": prefix}}
    return {"default": layer}, 2


def host_project(tmp: Path, layers: dict) -> Path:
    host = tmp / "host"
    (host / "hostproj").mkdir(parents=True)
    (host / "hostproj" / "__init__.py").write_text("")
    settings_text = SETTINGS.replace("CHANNEL_LAYERS_HERE", repr(layers))
    for name, text in (("settings.py", settings_text), ("urls.py", URLS), ("asgi.py", ASGI)):
        (host / "hostproj" / name).write_text(textwrap.dedent(text))
    (host / "manage.py").write_text(MANAGE)
    return host


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"host server exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"host server did not answer:\n{log.read_text()[-3000:]}")


async def test_a_host_project_installs_the_wheel_migrates_and_has_rooms(tmp_path):
    wheel = build_wheel(tmp_path)
    layers, workers = host_layer()
    host = host_project(tmp_path, layers)
    run([sys.executable, "-m", "venv", str(tmp_path / "venv")], tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    install(python, wheel, host)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CHOIR_", "PYTHON", "DATABASE_", "REDIS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    where = run([str(python), "-c", "import choir; print(choir.__file__)"], host, env).stdout
    assert str(tmp_path / "venv") in where, f"choir came from {where}, not the wheel"
    run([str(python), "manage.py", "migrate", "--noinput", "-v0"], host, env)
    run([str(python), "manage.py", "choir_setup"], host, env)

    port = free_port()
    log = tmp_path / "host-server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(python), "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            cwd=host, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", server, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/rooms/lobby/", timeout=10) as page:
            assert "choir/room.js" in page.read().decode()

        url = f"ws://127.0.0.1:{port}/ws/rooms/lobby/"
        async with websockets.connect(url) as listener, websockets.connect(url) as singer:
            for ws in (listener, singer):
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            await singer.send(json.dumps({"type": "say", "body": "Sung in a host project", "client_id": "host-1"}))
            for ws in (singer, listener):
                while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "message":
                    pass
                assert (frame["seq"], frame["body"], frame["client_id"]) == (1, "Sung in a host project", "host-1")
        # The [client] extra's command line, from the same virtualenv.
        said = run([str(python), "-m", "choir.client", url, "--name", "script"], host, env, timeout=60, input="And from a script\n")
        assert said.stdout.splitlines() == ["#2 script (guest): And from a script"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/rooms/lobby/messages?after=0", timeout=10) as history:
            assert [m["body"] for m in json.load(history)["messages"]] == ["Sung in a host project", "And from a script"]
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
