"""`make run` on another address: scripts/run_all.py follows RUN_ADDR, and the README says how (with SITE_URL)."""

import importlib.util
import re
import socket
from pathlib import Path

from django.conf import settings

RUN_ALL = Path(settings.BASE_DIR) / "scripts" / "run_all.py"


def _load_run_all(monkeypatch, addr: str | None):
    if addr is None:
        monkeypatch.delenv("RUN_ADDR", raising=False)
    else:
        monkeypatch.setenv("RUN_ADDR", addr)
    spec = importlib.util.spec_from_file_location("run_all_under_test", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_all_serves_and_probes_run_addr(monkeypatch):
    assert "127.0.0.1:8000" in _load_run_all(monkeypatch, None).PROCESSES["web"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        addr = f"127.0.0.1:{listener.getsockname()[1]}"
        run_all = _load_run_all(monkeypatch, addr)
        assert run_all.PROCESSES["web"][-2:] == [addr, "--noreload"]
        assert run_all._web_is_up()  # the readiness probe knocks on RUN_ADDR, not on 8000


def test_readme_documents_run_addr_with_site_url():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    example = re.search(r"RUN_ADDR=(\S+) SITE_URL=(\S+) make run", readme)
    assert example is not None
    assert example.group(2) == f"http://{example.group(1)}"
    assert "| `RUN_ADDR` | `127.0.0.1:8000` |" in readme
