"""The deployment guide, run: every line of its `sh` blocks, with its paths pointed at temporary ones.

The `bash` blocks need root on a real server (apt, users, systemctl, certbot)
and are not run; the nginx test (test_ops_nginx.py) does what they lead to.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from tests import ops_support
from tests.support import ROOT, need_tool

GUIDE = ROOT / "docs" / "deployment.md"


def guide_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", GUIDE.read_text(), flags=re.S | re.M)


def guide_lines() -> list[str]:
    return [line for block in guide_blocks("sh") for line in block.splitlines() if line.strip()]


def test_the_guide_covers_every_step_of_a_deployment():
    lines = "\n".join(guide_lines())
    for step in (
        "manage.py check --deploy --fail-level WARNING",
        "manage.py migrate --noinput",
        "manage.py collectstatic --noinput",
        "manage.py createsuperuser --noinput",
        "envsubst",
        "nginx -t",
        "systemd-analyze verify",
    ):
        assert step in lines, f"the guide's tested steps lack {step!r}"
    machine_only = "\n".join(guide_blocks("bash"))
    for step in ("apt-get install", "createdb", "choir.env.example", "systemctl enable --now choir", "certbot"):
        assert step in machine_only


def test_the_example_settings_refuse_to_start_without_a_secret_key():
    env = {**ops_support.read_env_file(), "PATH": "/usr/bin:/bin"}
    assert env["SECRET_KEY"] == "" and env["DEBUG"] == "0"
    done = subprocess.run([str(ROOT / ".venv/bin/python"), "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "SECRET_KEY must be set" in done.stderr


def test_the_nginx_config_trusts_nothing_a_client_says_about_itself():
    conf = ops_support.NGINX_TEMPLATE.read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "$proxy_add_x_forwarded_for" not in conf
    for line in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header X-Request-ID $request_id;"):
        assert line in conf


@pytest.mark.e2e
def test_every_sh_command_in_the_guide_runs(transactional_db, tmp_path: Path):
    nginx = ops_support.nginx_binary()
    need_tool("envsubst")
    need_tool("systemd-analyze")
    cert_dir = tmp_path / "tls"
    cert_dir.mkdir()
    ops_support.self_signed_cert(cert_dir, "choir.example.com")
    static_root = tmp_path / "static"
    site = tmp_path / "sites-available-choir"
    main_conf = ops_support.nginx_main_conf(tmp_path, site)

    # /etc/choir/choir.env: the example with what an operator fills in, and this test's database.
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.postgresql":
        database_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        fresh_sqlite = None
    else:
        fresh_sqlite = tmp_path / "choir.sqlite3"  # from nothing: migrate builds every table
        database_url = f"sqlite:///{fresh_sqlite}"
    env_file = tmp_path / "choir.env"
    env_file.write_text(
        ops_support.ENV_EXAMPLE.read_text()
        + "\n# filled in by the test\n"
        + f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        + f"DATABASE_URL={database_url}\n"
        + f"REDIS_URL={','.join(settings.REDIS_URLS)}\n"
        + "CHOIR_REDIS_PREFIX=opsguide\n"
        + f"STATIC_ROOT={static_root}\n"
        + f"CHOIR_VAR_DIR={tmp_path / 'var'}\n"
    )
    # The `bash` step before: cp deploy/systemd/choir.service /etc/systemd/system/.
    unit = tmp_path / "choir.service"
    unit.write_text((ROOT / "deploy/systemd/choir.service").read_text().replace("/srv/choir", str(ROOT)))
    hooks_unit = tmp_path / "choir-webhooks.service"
    hooks_unit.write_text((ROOT / "deploy/systemd/choir-webhooks.service").read_text().replace("/srv/choir", str(ROOT)))

    substitutions = [
        ("/etc/choir/choir.env", str(env_file)),
        ("/etc/nginx/sites-available/choir", str(site)),
        ("/etc/letsencrypt/live/choir.example.com/", f"{cert_dir}/"),
        ("/var/log/nginx", str(tmp_path / "logs")),
        ("/etc/systemd/system/choir.service", str(unit)),
        ("/etc/systemd/system/choir-webhooks.service", str(hooks_unit)),
        ("nginx -t", f"{nginx} -t -p {tmp_path} -c {main_conf}"),
        ("/srv/choir", str(ROOT)),
    ]
    script = ["set -euxo pipefail"]
    for line in guide_lines():
        for old, new in substitutions:
            line = line.replace(old, new)
        script.append(line)
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    assert "System check identified no issues" in output
    assert (static_root / "admin" / "css" / "base.css").exists()
    assert (static_root / "choir" / "choir.css").exists()
    rendered = site.read_text()
    assert "${CHOIR_" not in rendered and "server_name choir.example.com;" in rendered
    assert "$request_id" in rendered  # nginx's own variables were left alone
    assert "syntax is ok" in output and "test is successful" in output
    if fresh_sqlite is not None:
        with sqlite3.connect(fresh_sqlite) as conn:
            admins = conn.execute("SELECT is_superuser, is_staff FROM auth_user WHERE username = 'admin'").fetchall()
            lobby = conn.execute("SELECT guests_may_post FROM choir_room WHERE slug = 'lobby'").fetchall()
        assert admins == [(1, 1)] and lobby == [(1,)]
    else:
        assert get_user_model().objects.filter(username="admin", is_superuser=True, is_staff=True).exists()
