"""Helpers for the operations tests: the deploy/ files, a real nginx, a private Redis."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support import ROOT, free_port, need_tool

DEPLOY = ROOT / "deploy"
NGINX_TEMPLATE = DEPLOY / "nginx" / "choir.conf"
ENV_EXAMPLE = DEPLOY / "choir.env.example"
PLACEHOLDER = re.compile(r"\$\{(CHOIR_[A-Z_]+)\}")


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= and `set -a; .` read them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def render(template: str, values: dict[str, str]) -> str:
    """What `envsubst '$CHOIR_...'` makes of the template: only those names."""
    names = set(PLACEHOLDER.findall(template))
    assert names <= set(values), f"no value for {sorted(names - set(values))}"
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def self_signed_cert(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    openssl = need_tool("openssl")
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def nginx_main_conf(directory: Path, site: Path) -> Path:
    """A top-level nginx.conf that keeps everything in `directory` and includes the site.

    This stands in for Debian's /etc/nginx/nginx.conf, which includes
    sites-enabled/ from its http {} block the same way.
    """
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (directory / sub).mkdir(exist_ok=True)
    # As root, nginx's workers would drop to `nobody`, who cannot read pytest's
    # private temporary directory; Debian's own file says `user www-data`.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {directory}/logs/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {site};
}}
"""
    )
    return conf


def nginx_binary() -> str:
    return need_tool("nginx", "/usr/sbin/nginx")


class Nginx:
    """A real nginx in the foreground, on the rendered Choir configuration."""

    def __init__(self, conf: Path, ports: list[int]) -> None:
        self.conf = conf
        self.ports = ports
        self.proc: subprocess.Popen | None = None

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run([nginx_binary(), "-t", "-p", str(self.conf.parent), "-c", str(self.conf)], capture_output=True, text=True)

    def start(self, timeout: float = 10.0) -> None:
        self.log = open(self.conf.parent / "logs" / "nginx.out", "ab")
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.conf.parent), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_ports(self.ports, self.proc, timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: lets open sockets finish
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self.log.close()


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that the test may stop."""

    def __init__(self) -> None:
        self.binary = need_tool("redis-server")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for_ports([self.port], self.proc, timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for_ports(ports: list[int], proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listens on {port} after {timeout}s") from None
                time.sleep(0.05)


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)
