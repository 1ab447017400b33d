"""The benchmark's smallest preset runs end to end against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support import ROOT, need_tool

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def _admin_url() -> str:
    db = settings.DATABASES["default"]
    return (
        os.environ.get("DATABASE_URL")
        or f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )


def test_it_runs_the_quick_preset_and_writes_a_report_with_nothing_lost(tmp_path, uses_postgres, uses_redis):
    need_tool("redis-server")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--output",
            str(tmp_path),
            "--database-url",
            _admin_url(),
            "--db-name",
            f"choir_bench_test_{os.getpid()}",
            "--max-seconds",
            "240",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    latest = tmp_path / "latest"
    for name in ("results.json", "report.md", "latency.png", "bench.log"):
        assert (latest / name).stat().st_size > 0, name
    results = json.loads((latest / "results.json").read_text())
    scenarios = results["scenarios"]
    assert set(scenarios) == {"fanout-20", "rooms", "chatter", "idle", "workers"}
    # Every peer ran, or the report says why not (no Node on the machine, say).
    ran = results["meta"]["targets"]
    skipped = results["meta"]["skipped"]
    assert {"choir", "raw", "asgi", "channels"} <= set(ran)
    for peer in ("ws", "socketio", "pysocketio"):
        assert (peer in ran) != bool(skipped.get(peer)), (peer, skipped)
        assert peer in ran or f"{peer}: " in (latest / "report.md").read_text(), peer
    for key in ("fanout-20", "rooms", "idle"):
        assert set(scenarios[key]["targets"]) == set(ran), key
    for peer in {"ws", "socketio", "pysocketio"} & set(ran):
        steps = scenarios["fanout-20"]["targets"][peer]["steps"]
        assert steps and all(step["received"] == step["expected"] > 0 for step in steps), peer

    choir = scenarios["fanout-20"]["targets"]["choir"]
    assert choir["steps"] and all(step["lost"] == 0 for step in choir["steps"])
    assert all(step["received"] == step["expected"] > 0 for step in choir["steps"])
    assert scenarios["rooms"]["targets"]["choir"]["lost"] == 0
    chatter = scenarios["chatter"]["targets"]["choir"]
    assert chatter["lost"] == 0 and chatter["db"]["gap_free"] and chatter["stored_matches_sent"]
    assert scenarios["idle"]["targets"]["choir"]["levels"][0]["connect_failed"] == 0
    by_workers = scenarios["workers"]["targets"]["choir"]["by_workers"]
    assert [run["workers"] for run in by_workers] == [1, 2]
    assert all(step["lost"] == 0 and step["received"] > 0 for run in by_workers for step in run["steps"])
    report = (latest / "report.md").read_text()
    assert "| chatter |" in report
    assert "Node Socket.IO" in report or "socketio" not in ran
