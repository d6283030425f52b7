"""Main portal flows in headless Chromium (Debian's), with screenshots under var/screenshots/."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import save_screenshot
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def shot(page, name):
    save_screenshot(page, f"portal_{name}")


@pytest.fixture
def integrator(transactional_db):
    user = UserFactory(email="integ@example.org")
    client = ClientFactory(name="Communauté d'agglomération du Pays de la Haute-Vallée et des Trois Rivières")
    ClientMembershipFactory(client=client, user=user)
    other = ClientFactory(name="Mairie de Bourg-la-Reine")
    ClientMembershipFactory(client=other, user=user)
    contact = ContactFactory(client=client, email="tech@agglo.example.org", name="Claire Tech")
    from dateutil.relativedelta import relativedelta
    from django.utils import timezone

    now = timezone.now()
    tokens = [
        issue_token(
            client=client,
            label="Portail des aides économiques",
            contacts=[contact],
            issued_at=now - relativedelta(months=18) + relativedelta(days=10),
        ),
        issue_token(
            client=client,
            label="Marchés publics",
            privileges=("entreprises", "attestations_fiscales_dgfip", "attestations_sociales_acoss"),
            issued_at=now - relativedelta(months=18) + relativedelta(days=45),
        ),
        issue_token(
            client=other,
            label="État civil",
            privileges=("associations",),
            issued_at=now - relativedelta(months=18) + relativedelta(days=75),
        ),
        issue_token(
            client=other, label="Subventions aux associations", issued_at=now - relativedelta(months=2)
        ),
    ]
    return user, client, tokens


def login(page, live_server, username):
    page.goto(f"{live_server.url}/")
    assert "/connexion/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/connexion/'] button[type=submit]")


def test_dashboard_token_decline_and_revoke(page, live_server, integrator):
    user, client, tokens = integrator
    login(page, live_server, user.email)
    page.wait_for_selector("#tokens-table")
    expect(page.locator("#tokens-table tbody tr")).to_have_count(4)
    shot(page, "dashboard")

    # filter by "expires within 30 days" with the keyboard-usable form
    page.fill("#id_within", "30")
    page.click("form[role=search] button[type=submit]")
    expect(page.locator("#tokens-table tbody tr")).to_have_count(1)
    shot(page, "dashboard_filtered")

    page.click("text=Portail des aides économiques")
    page.wait_for_selector("h1")
    assert "Portail des aides économiques" in page.inner_text("h1")
    expect(page.locator("text=tech@agglo.example.org")).to_have_count(1)
    shot(page, "token")

    page.click('button:has-text("Ce jeton n\'est plus utilisé")')
    page.wait_for_selector("text=Reprendre les rappels")
    shot(page, "token_declined")

    page.click("a:has-text('Révoquer')")
    page.click("button:has-text('Révoquer définitivement')")  # empty: errors tied to fields
    expect(page.locator("#id_reason-desc-error")).to_have_count(1)
    shot(page, "revoke_errors")
    page.fill("#id_reason", "Application arrêtée")
    page.check("#id_confirm", force=True)
    page.click("button:has-text('Révoquer définitivement')")
    page.wait_for_selector("text=Le jeton a été révoqué.")
    tokens[0].token.refresh_from_db()
    assert tokens[0].token.revoked_at is not None


def test_verify_calendar_webhooks_and_english(page, live_server, integrator):
    user, client, tokens = integrator
    login(page, live_server, user.email)
    page.click("#fr-navigation >> text=Vérifier un jeton")
    page.fill("#id_secret", tokens[1].secret)
    page.click("main button[type=submit]")
    page.wait_for_selector("#verify-result")
    assert "Jeton valide" in page.inner_text("#verify-result")
    assert page.input_value("#id_secret") == ""
    shot(page, "verify")

    page.click("#fr-navigation >> text=Calendrier")
    page.click("button[value=generate]")
    url = page.input_value("#ics-url")
    assert url.endswith(".ics")
    shot(page, "calendar")
    response = page.request.get(url)
    assert response.ok and "BEGIN:VCALENDAR" in response.text()

    page.click("#fr-navigation >> text=Webhooks")
    page.fill("#id_url", "http://insecure.example.fr/hook")
    page.click("main form button[type=submit]")
    expect(page.locator("#id_url-desc-error")).to_have_count(1)
    shot(page, "webhooks_error")
    page.fill("#id_url", "https://hooks.example.fr/tokenmgr")
    page.click("main form button[type=submit]")
    secret = page.input_value("#webhook-secret")
    assert secret.startswith("whsec_")
    shot(page, "webhook_secret")

    page.click("header button[value=en]")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    page.goto(f"{live_server.url}/")
    shot(page, "dashboard_en")


def test_mobile_dashboard(browser, live_server, integrator):
    user, client, tokens = integrator
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    login(page, live_server, user.email)
    page.wait_for_selector("#tokens-table")
    shot(page, "dashboard_mobile")
    context.close()
