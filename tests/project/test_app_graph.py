"""The arrows between apps run one way (README.md, "Code map"): a plain import says what depends on what, and
no two apps depend on each other, directly or through a third."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "tokens", "notifications", "portal", "availability", "staff2fa", "evolutions")
# What each app may import (besides tokenmgr, the project's shared place, and itself).
ALLOWED = {
    "accounts": set(),
    "tokens": {"accounts"},
    "notifications": {"accounts", "tokens"},
    "availability": {"tokens"},
    "staff2fa": {"accounts"},
    "evolutions": {"accounts", "tokens", "notifications"},
    "portal": {"accounts", "tokens", "notifications", "availability", "evolutions"},
}


def imports_of(app: str) -> dict[str, set[str]]:
    """{imported app: files} for every module of `app` outside its migrations."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in APPS and top != app:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_each_app_imports_only_what_it_may():
    wrong = {
        f"{app} → {other}": sorted(files)
        for app in APPS
        if (ROOT / app).is_dir()
        for other, files in imports_of(app).items()
        if other not in ALLOWED[app]
    }
    assert wrong == {}


def test_the_allowed_graph_has_no_cycle():
    seen: set[str] = set()

    def visit(app: str, path: tuple[str, ...]) -> None:
        assert app not in path, " → ".join((*path, app))
        if app in seen:
            return
        for other in ALLOWED[app]:
            visit(other, (*path, app))
        seen.add(app)

    for app in ALLOWED:
        visit(app, ())
