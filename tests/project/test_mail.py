"""Emails made from templates go through tokenmgr.mail: one renderer, one set of shared variables."""

from pathlib import Path

import pytest

from tokenmgr.mail import build_email, render_email

ROOT = Path(__file__).resolve().parents[2]
# notifications/emails.py renders reminders with its own precompiled fast path (measured there).
OWN_RENDERERS = {ROOT / "tokenmgr" / "mail.py", ROOT / "notifications" / "emails.py"}


def test_render_email_collapses_the_subject_and_shares_site_variables(settings):
    settings.SITE_URL = "https://jetons.example"
    settings.SERVICE_NAME = "Service test"
    rendered = render_email(
        "registration/reauth_link", {"email": "a@example.org", "link": "https://x/y", "max_age_minutes": 15}
    )
    assert "\n" not in rendered.subject and "  " not in rendered.subject
    assert "Service test" in rendered.text and "https://x/y" in rendered.html


def test_build_email_has_text_html_and_headers():
    message = build_email(
        "registration/reauth_link",
        {"email": "a@example.org", "link": "https://x/y", "max_age_minutes": 15},
        to=["a@example.org"],
        headers={"X-Test": "1"},
    )
    assert message.to == ["a@example.org"] and message.extra_headers == {"X-Test": "1"}
    assert message.alternatives[0][1] == "text/html"


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for d in ("tokens", "portal", "accounts", "tokenmgr", "notifications", "availability", "evolutions")
        for p in (ROOT / d).rglob("*.py")
    ),
    ids=str,
)
def test_no_second_email_renderer(path):
    if path in OWN_RENDERERS:
        return
    assert "EmailMultiAlternatives" not in path.read_text(), "make emails with tokenmgr.mail.build_email"
