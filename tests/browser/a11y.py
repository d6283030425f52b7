"""axe-core (bundled by axe-playwright-python, injected from the package: never from a CDN) on a Playwright page.

`assert_accessible(page)` fails on any violation of impact serious or critical, listing rule, impact, help text
and the first offending nodes; every browser test may call it on the page it has just loaded.
"""

from __future__ import annotations

import pytest

BLOCKING_IMPACTS = ("serious", "critical")
# axe-core's rule sets for WCAG 2.0/2.1 A and AA, plus its best practices: the level RGAA refers to.
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


def axe_violations(page) -> list[dict]:
    """Every axe-core violation on the page as loaded now (all impacts)."""
    axe_module = pytest.importorskip("axe_playwright_python.sync_playwright")
    results = axe_module.Axe().run(page, options=AXE_OPTIONS)
    return results.response["violations"]


def blocking(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]


def describe(violations: list[dict], url: str = "") -> str:
    lines = []
    for v in violations:
        lines.append(f"{url} [{v['impact']}] {v['id']}: {v['help']} ({len(v['nodes'])} node(s))")
        for node in v["nodes"][:3]:
            lines.append(
                f"    {' '.join(node['target'][:1]) if node['target'] else '?'}: {node['html'][:160]}"
            )
    return "\n".join(lines)


def assert_accessible(page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    found = blocking(axe_violations(page))
    assert not found, "accessibility violations:\n" + describe(found, page.url)
