"""Shared fixtures of the browser tests: Debian's headless Chromium through Playwright (never `playwright install`)."""

import os
from pathlib import Path

import pytest
from django.conf import settings

# Playwright's sync API runs an event loop in this thread; Django's ORM must still be allowed here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


@pytest.fixture(scope="session")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def is_csp_violation(text: str) -> bool:
    """Chromium reports each blocked script, style, image... on the console, naming the policy."""
    return "Content Security Policy" in text


@pytest.fixture
def new_context(chromium):
    """Factory of isolated browser sessions (one per person in a scenario).

    A Content-Security-Policy violation reported on any page's console fails the test that loaded it.
    """
    contexts = []
    violations: list[str] = []

    def on_console(message) -> None:
        if is_csp_violation(message.text):
            violations.append(f"{message.page.url if message.page else '?'}: {message.text}")

    def make():
        context = chromium.new_context(viewport={"width": 1280, "height": 1000}, locale="fr-FR")
        context.set_default_timeout(15_000)
        context.on("console", on_console)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    if violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations))


def save_screenshot(page, name: str) -> None:
    """A test artefact under var/screenshots/ (not committed)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def screenshot():
    return save_screenshot


@pytest.fixture
def accessible():
    """`accessible(page)`: fails on any serious or critical axe-core violation of the page (tests/browser/a11y.py)."""
    from tests.browser.a11y import assert_accessible

    return assert_accessible


@pytest.fixture
def browser(chromium):
    return chromium


@pytest.fixture
def page(new_context):
    """One page in a fresh session, 1280 px wide, French."""
    return new_context().new_page()


@pytest.fixture
def catalogue(transactional_db):
    """The seeded catalogue (tests/conftest.py restores it before every database test, after any flush)."""
