"""Settings have no side effects on import, and the benchmark-only views are routed only when asked for."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

from django.conf import settings as django_settings

ROOT = Path(django_settings.BASE_DIR)


def test_importing_the_settings_creates_no_directory(tmp_path, monkeypatch):
    made: list[str] = []
    monkeypatch.setattr(Path, "mkdir", lambda self, *args, **kwargs: made.append(str(self)))
    monkeypatch.setattr(os, "makedirs", lambda path, *args, **kwargs: made.append(str(path)))
    monkeypatch.setattr(os, "mkdir", lambda path, *args, **kwargs: made.append(str(path)))
    # The embedded defaults: SQLite under a folder, the filesystem broker, STATIC_ROOT; none of them exists yet.
    monkeypatch.setenv("DEBUG", "1")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/var/db.sqlite3")
    monkeypatch.setenv("STATIC_ROOT", str(tmp_path / "static"))
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    values = runpy.run_path(str(ROOT / "tokenmgr" / "settings.py"))
    assert values["STATIC_ROOT"] == tmp_path / "static"
    assert values["CELERY_BROKER_URL"] == "filesystem://"
    assert made == []
    assert list(tmp_path.iterdir()) == []


def _bench_route(**env: str) -> str:
    code = (
        "import django; django.setup()\n"
        "from django.urls import Resolver404, resolve\n"
        "try:\n    resolve('/bench/bare'); print('routed')\n"
        "except Resolver404:\n    print('not found')\n"
    )
    base = {k: v for k, v in os.environ.items() if k not in {"BENCH_VIEWS", "DEBUG"}}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "tokenmgr.settings", "DEBUG": "0", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


def test_benchmark_views_are_not_routed_in_production(client, db):
    assert client.get("/bench/bare").status_code == 404
    assert _bench_route() == "not found"
    assert _bench_route(BENCH_VIEWS="1") == "routed"  # bench/privileges.py asks for them explicitly
