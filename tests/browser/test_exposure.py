"""« Ce secret a fuité » in headless Chromium: the token page's button, the confirmation, the exposed panel and the
renewal that replaces the token (screenshots under var/screenshots/exposure_*)."""

import pytest
from django.core import mail
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token
from tokens.models import Token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def test_holder_reports_a_leak_then_replaces_the_token(page, live_server, settings, celery_eager):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EXPOSED_TOKEN_POLICY = "revoke"
    user = UserFactory(email="integ@example.org")
    client = ClientFactory(name="Mairie de Bourg-la-Reine")
    ClientMembershipFactory(client=client, user=user)
    contact = ContactFactory(client=client, email="tech@mairie.example.org", name="Claire Tech")
    issued = issue_token(client=client, label="État civil", contacts=[contact], origin="api_gouv")

    page.goto(f"{live_server.url}/jetons/{issued.token.public_id}/")
    page.fill("#id_username", user.email)
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/connexion/'] button[type=submit]")
    page.wait_for_selector("h1")
    save_screenshot(page, "exposure_1_token_page")

    page.click("text=Ce secret a fuité")
    page.wait_for_selector("text=Signaler la fuite")
    page.fill("#id_url", "https://github.com/mairie/etat-civil/blob/main/.env")
    page.check("#id_confirm", force=True)
    save_screenshot(page, "exposure_2_confirmation")
    page.click("button:has-text('Signaler la fuite')")

    expect(page.locator("#token-exposed")).to_contain_text("Secret exposé")
    expect(page.locator("#token-exposed")).to_contain_text("github.com/mairie/etat-civil")
    save_screenshot(page, "exposure_3_exposed_panel")
    token = Token.objects.get(pk=issued.token.pk)
    assert token.revoked_at is not None
    assert [m.to for m in mail.outbox] == [["tech@mairie.example.org"]]

    page.click("text=Demander un jeton pour le remplacer")
    page.wait_for_selector("h1")
    assert "Renouveler le jeton" in page.inner_text("h1")
    save_screenshot(page, "exposure_4_renewal")
