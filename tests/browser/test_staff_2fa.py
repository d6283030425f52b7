"""Staff second factor in headless Chromium: enrolment from the QR page's secret, recovery codes, then a later
login with password + TOTP; screenshots under var/screenshots/staff2fa_*.png. Also: the pages hold no inline script
that the Content-Security-Policy would block (the console is watched by tests/browser/conftest.py)."""

import time
from base64 import b32decode

import pytest
from django.urls import reverse
from django_otp.oath import TOTP

from tests.browser.conftest import is_csp_violation, save_screenshot
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def totp(secret: str, *, offset: int = 0) -> str:
    """RFC 6238 code of a base32 secret (SHA1, 6 digits, 30 s), as an authenticator app computes it."""
    generator = TOTP(b32decode(secret))
    generator.time = time.time() + offset
    return f"{generator.token():06d}"


def password_login(page, url: str) -> None:
    page.goto(url + reverse("admin:login"))
    page.fill("#id_username", "instructrice@api.gouv.fr")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def test_enrolment_then_login_with_totp(new_context, live_server, settings, catalogue):
    settings.STAFF_2FA = "required"
    UserFactory(username="instructrice@api.gouv.fr", is_staff=True, is_superuser=True)

    page = new_context().new_page()
    password_login(page, live_server.url)
    page.wait_for_url("**/admin/second-factor/enrol/**")
    assert page.locator(".staff2fa-qr svg").is_visible()
    secret = page.get_attribute("#staff2fa-secret", "data-secret")
    assert page.inner_text("#staff2fa-secret").replace(" ", "") == secret
    save_screenshot(page, "staff2fa_enrol")

    # Before confirming, the admin stays closed.
    page.goto(live_server.url + reverse("admin:tokens_token_changelist"))
    page.wait_for_url("**/admin/second-factor/enrol/**")

    page.fill("#id_code", "000000" if totp(secret) != "000000" else "111111")
    page.click("#staff2fa-form input[type=submit]")
    assert "Code refusé" in page.inner_text("#content-main")
    time.sleep(2)  # the throttling delay after one failure
    page.fill("#id_code", totp(secret))
    page.click("#staff2fa-form input[type=submit]")
    page.wait_for_url("**/admin/second-factor/recovery-codes/**")
    codes = page.locator("#staff2fa-recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    save_screenshot(page, "staff2fa_recovery_codes")
    page.click("#staff2fa-continue")
    page.wait_for_url("**/admin/tokens/token/")
    assert "instructrice@api.gouv.fr" in page.inner_text("#user-tools").lower()
    save_screenshot(page, "staff2fa_admin")

    # A later login, in a new browser session: password, then the app's next code.
    later = new_context().new_page()
    password_login(later, live_server.url)
    later.wait_for_url("**/admin/second-factor/?**")
    save_screenshot(later, "staff2fa_verify")
    later.fill("#id_code", totp(secret, offset=30))  # the enrolment's code cannot be replayed: next window
    later.click("#staff2fa-form input[type=submit]")
    if "Code refusé" in later.inner_text("#content-main"):
        # Too early for the next window's code (drift tolerance is one step): wait for it.
        time.sleep(31 - time.time() % 30)
        later.fill("#id_code", totp(secret))
        later.click("#staff2fa-form input[type=submit]")
    later.wait_for_url(live_server.url + reverse("admin:index"))
    assert "Registre des jetons" in later.inner_text("#content")

    # And a recovery code, in a third session.
    third = new_context().new_page()
    password_login(third, live_server.url)
    third.wait_for_url("**/admin/second-factor/?**")
    third.fill("#id_code", codes[0])
    third.click("#staff2fa-form input[type=submit]")
    third.wait_for_url(live_server.url + reverse("admin:index"))
    assert "il vous en reste 9" in third.inner_text("body")


def test_swagger_ui_and_admin_pages_respect_the_policy(page, live_server, admin_user, catalogue):
    """Swagger UI (served locally) and a token issued in the admin run with no CSP violation."""
    page.goto(live_server.url + "/api/docs/")
    page.wait_for_selector(".swagger-ui .info", timeout=30_000)
    save_screenshot(page, "csp_swagger")
    page.goto(live_server.url + reverse("admin:login"))
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(live_server.url + reverse("admin:index"))
    page.goto(live_server.url + reverse("admin:tokens_token_changelist"))
    page.wait_for_selector("#changelist")


def test_a_blocked_inline_script_is_seen_as_a_violation(chromium):
    """The console watch of tests/browser/conftest.py recognises what Chromium reports when the policy blocks."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        messages = []
        page.on("console", lambda message: messages.append(message.text))
        page.set_content(
            '<meta http-equiv="Content-Security-Policy" content="script-src \'self\'">'
            "<script>document.title = 'ran'</script>"
        )
        page.wait_for_timeout(200)
        assert page.title() != "ran"
        assert any(is_csp_violation(text) for text in messages), messages
    finally:
        context.close()
