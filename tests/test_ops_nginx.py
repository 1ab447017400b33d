"""The front door: deploy/nginx/choir.conf in a real nginx, before two real Daphne workers.

nginx (TLS, static files) → `manage.py serve --workers 2` with the production
settings of deploy/choir.env.example → PostgreSQL (or SQLite in pass 1) and a
private Redis this test can stop.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests import ops_support
from tests.ops_support import scrape, value
from tests.support import OUTPUT, ROOT, Server, free_port, ws_frames

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def fetch(port: int, path: str, *, tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None):
    """One request, redirects not followed: (status, headers (any case), body)."""
    if tls is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()




def wait_until(check: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def private_redis():
    redis = ops_support.PrivateRedis()
    redis.start()
    yield redis
    redis.stop()


def production_env(server_env: dict[str, str], redis_url: str, static_root: Path, https_port: int) -> dict[str, str]:
    """deploy/choir.env.example, pointed at this test's database, Redis and directories."""
    env = {**server_env, **ops_support.read_env_file()}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="localhost,127.0.0.1",
        CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{https_port}",
        DATABASE_URL=server_env["DATABASE_URL"],
        REDIS_URL=redis_url,
        CHOIR_REDIS_PREFIX="opsnginx",
        STATIC_ROOT=str(static_root),
    )
    return env


async def conversation(port: int, tls: ssl.SSLContext) -> tuple[dict, dict]:
    url = f"wss://127.0.0.1:{port}/ws/rooms/lobby/"
    async with websockets.connect(url, ssl=tls) as alto, websockets.connect(url, ssl=tls) as bass:
        for ws in (alto, bass):
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hello["type"] == "hello" and hello["room"]["slug"] == "lobby"
        await alto.send(json.dumps({"type": "say", "body": "through the front door", "client_id": "ops-nginx-1"}))
        (ack,) = await ws_frames(alto, 1)
        (heard,) = await ws_frames(bass, 1)
        await alto.send(json.dumps({"type": "say", "body": ""}))
        (refused,) = await ws_frames(alto, 1, kind="error")
        assert refused["code"] == "invalid"
        return ack, heard


async def hold_two_sockets(port: int, tls: ssl.SSLContext, while_open: Any) -> Any:
    url = f"wss://127.0.0.1:{port}/ws/rooms/lobby/"
    async with websockets.connect(url, ssl=tls) as one, websockets.connect(url, ssl=tls) as two:
        for ws in (one, two):
            await asyncio.wait_for(ws.recv(), 10)
        return await asyncio.to_thread(while_open)


def test_it_serves_pages_static_files_sockets_metrics_and_readiness_through_nginx(server_env, private_redis, lobby, tmp_path):
    ops_support.nginx_binary()
    http_port, https_port = free_port(), free_port()
    static_root = tmp_path / "static"
    env = production_env(server_env, private_redis.url, static_root, https_port)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)

    server = Server(env=env, workers=2)
    server.start()
    nginx = None
    try:
        assert len(server.worker_pids()) == 2
        cert, key = ops_support.self_signed_cert(tmp_path)
        site = tmp_path / "choir.conf"
        site.write_text(
            ops_support.render(
                ops_support.NGINX_TEMPLATE.read_text(),
                {
                    "CHOIR_DOMAIN": "localhost",
                    "CHOIR_HTTP_LISTEN": f"127.0.0.1:{http_port}",
                    "CHOIR_HTTPS_LISTEN": f"127.0.0.1:{https_port}",
                    "CHOIR_UPSTREAM": f"127.0.0.1:{server.port}",
                    "CHOIR_STATIC_ROOT": str(static_root),
                    "CHOIR_TLS_CERT": str(cert),
                    "CHOIR_TLS_KEY": str(key),
                    "CHOIR_NGINX_LOG_DIR": str(tmp_path / "logs"),
                },
            )
        )
        nginx = ops_support.Nginx(ops_support.nginx_main_conf(tmp_path, site), [http_port, https_port])
        checked = nginx.check()
        assert checked.returncode == 0, checked.stderr
        nginx.start()
        tls = ssl.create_default_context(cafile=str(cert))

        # Plain HTTP is sent to HTTPS.
        status, headers, _ = fetch(http_port, "/")
        assert status == 301 and headers["Location"].startswith("https://")

        # A page, through TLS: Django sees https (no redirect loop, HSTS set) and nginx's request id.
        status, headers, body = fetch(https_port, "/", tls=tls)
        assert status == 200, body[:300]
        assert b"Lobby" in body
        assert "max-age=31536000" in headers["Strict-Transport-Security"]
        assert len(headers["X-Request-ID"]) == 32  # nginx's $request_id, echoed by Django

        # A static file, from STATIC_ROOT by nginx: Daphne itself does not serve it.
        status, headers, body = fetch(https_port, "/static/choir/choir.css", tls=tls)
        assert status == 200
        assert body == (static_root / "choir" / "choir.css").read_bytes()
        assert headers["Content-Type"].startswith("text/css")
        assert fetch(server.port, "/static/choir/choir.css", headers={"X-Forwarded-Proto": "https"})[0] == 404

        # Daphne believes the forwarded address (CHOIR_PROXY_HEADERS=1), and nginx
        # replaces whatever a client claims.
        spoofed = {"X-Forwarded-For": "203.0.113.9"}
        assert fetch(server.port, "/metrics", headers=spoofed)[0] == 403
        status, _, before_text = fetch(https_port, "/metrics", tls=tls, headers=spoofed)
        assert status == 200
        before = scrape(before_text.decode())

        # A WebSocket conversation through nginx.
        ack, heard = asyncio.run(conversation(https_port, tls))
        assert ack["client_id"] == "ops-nginx-1" and ack["body"] == "through the front door"
        assert heard["seq"] == ack["seq"] and heard["body"] == ack["body"]

        # The counters moved, whichever worker answers the scrape.
        after = scrape(fetch(https_port, "/metrics", tls=tls)[2].decode())
        assert value(after, "choir_messages_stored_total") == value(before, "choir_messages_stored_total") + 1
        assert value(after, "choir_frames_delivered_total") >= value(before, "choir_frames_delivered_total") + 2
        assert value(after, "choir_broadcast_latency_seconds_count") >= value(before, "choir_broadcast_latency_seconds_count") + 1

        # Gauges: per process, and per room over all processes.
        def while_open() -> dict:
            scraped = wait_until(
                lambda: (s := scrape(fetch(https_port, "/metrics", tls=tls)[2].decode()))
                and value(s, "choir_room_online", room="lobby") == 2
                and s,
                "two sockets counted in the lobby",
            )
            (OUTPUT / "ops-metrics-sample.txt").write_bytes(fetch(https_port, "/metrics", tls=tls)[2])
            return scraped

        during = asyncio.run(hold_two_sockets(https_port, tls, while_open))
        per_process = {dict(labels)["pid"]: v for (name, labels), v in during.items() if name == "choir_open_sockets"}
        assert set(per_process) == {str(pid) for pid in server.worker_pids()}
        assert sum(per_process.values()) == 2

        # The socket's log lines carry the request id nginx gave its handshake.
        def joined_ids() -> set[str]:
            access = (tmp_path / "logs" / "choir.access.log").read_text().splitlines()
            ws_ids = {json.loads(line)["request_id"] for line in access if '"uri":"/ws/rooms/lobby/"' in line}
            app = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
            return ws_ids & {line["request_id"] for line in app if line.get("event") == "connect"}

        assert wait_until(joined_ids, "nginx's access log to hold the socket lines")
        (OUTPUT / "ops-log-sample.jsonl").write_text(
            "".join(line + "\n" for line in server.log_path.read_text().splitlines() if line.startswith("{"))
        )
        (OUTPUT / "ops-nginx-access-sample.jsonl").write_text((tmp_path / "logs" / "choir.access.log").read_text())

        # Ready while Redis answers; 503 naming the channel layer when it stops; ready again after.
        assert fetch(https_port, "/readyz", tls=tls)[0] == 200
        private_redis.stop()
        status, _, body = fetch(https_port, "/readyz", tls=tls)
        assert status == 503
        assert list(json.loads(body)["failing"]) == ["channel_layer"]
        private_redis.start()
        wait_until(lambda: fetch(https_port, "/readyz", tls=tls)[0] == 200, "/readyz to recover")
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()
