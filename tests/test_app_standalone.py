"""The app stands alone: its pages render without the site's templates or URLs, and it never reaches into the site."""

import ast
from pathlib import Path

import pytest

import choir

CHOIR = Path(choir.__file__).resolve().parent
SHIPPED = sorted(p for p in CHOIR.rglob("*.py") if "bench" not in p.relative_to(CHOIR).parts)


@pytest.fixture
def app_alone(settings):
    """Only choir.urls mounted, and only the templates that ship inside installed apps."""
    # Django's setting_changed handlers reset the URL resolver and the template engines.
    settings.ROOT_URLCONF = "choir.urls"
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]


def test_the_room_pages_render_from_the_apps_own_templates(app_alone, lobby, client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/choir/choir.css" in html and "/rooms/lobby/" in html
    assert "Log in" not in html  # no accounts pages in this project, so no link to them
    room = client.get("/rooms/lobby/")
    assert room.status_code == 200
    assert "choir/room.js" in room.content.decode()


def test_the_site_puts_the_rooms_in_its_own_layout(lobby, client):
    html = client.get("/").content.decode()
    assert 'href="/accounts/signup/"' in html and 'href="/accounts/login/?next=/"' in html


def test_no_module_of_the_app_imports_the_site():
    for path in SHIPPED:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(name.split(".")[0] == "choirsite" for name in names), path
        assert '"choirsite' not in path.read_text(), f"{path} names the site"


def test_the_app_reads_no_setting_only_the_site_defines():
    for path in SHIPPED:
        text = path.read_text()
        for name in ("REDIS_URLS", "BASE_DIR", "VAR_DIR", "CHOIR_LOG_FORMAT", "LOG_LEVEL"):
            assert f"settings.{name}" not in text, f"{path} reads settings.{name}"


def test_importing_the_asgi_helper_loads_neither_twisted_nor_django_setup():
    import subprocess
    import sys

    check = "import sys, choir.asgi; assert not [m for m in sys.modules if m.split('.')[0] in {'twisted', 'daphne', 'channels'}]"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


async def test_the_asgi_helper_serves_http_with_the_projects_own_app(settings):
    from choir.asgi import choir_application

    settings.CHOIR_SERVE_STATIC = False
    seen = []

    async def host_http(scope, receive, send):
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    application = choir_application(host_http)
    await application({"type": "http", "path": "/anything", "method": "GET", "headers": []}, receive, send)
    assert seen == ["/anything"] and sent[0]["status"] == 204


def test_a_project_without_a_channel_layer_or_asgi_application_is_told_at_start_up(settings):
    from django.core import checks

    assert [e.id for e in checks.run_checks() if e.id.startswith("choir.")] == []
    settings.CHANNEL_LAYERS = {}
    settings.ASGI_APPLICATION = None
    assert sorted(e.id for e in checks.run_checks() if e.id.startswith("choir.")) == ["choir.E001", "choir.E002"]
