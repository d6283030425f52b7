"""The evolutions page (filters, upcoming sunsets first, Atom/JSON links) and the evolutions panel of a token's page
and the dashboard badge, in headless Chromium, with screenshots under var/screenshots/."""

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from evolutions import services
from evolutions.models import Evolution
from tests.browser.conftest import save_screenshot
from tests.browser.test_portal import login
from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory, issue_token
from tokens.models import Endpoint

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def endpoint_of(code: str) -> Endpoint:
    return Endpoint.objects.filter(privileges__code=code).order_by("path").first()


@pytest.fixture
def evolutions(transactional_db):
    now = timezone.now()
    entries = [
        ("data_source", "Nouvelle source pour les données INSEE", "entreprises", None),
        ("endpoints", "Retrait de l'endpoint v2 des établissements", "entreprises", 45),
        ("parameters", "Paramètre `context` obligatoire", "associations", None),
        ("security_volume", "Limite abaissée à 200 requêtes par minute", "associations", 300),
    ]
    made = []
    for kind, title, privilege, sunset_days in entries:
        entry = Evolution.objects.create(
            kind=kind,
            title=title,
            body="Ce changement **vous concerne** si vous appelez cet endpoint.\n\n- migrez vers la v3\n- testez en recette",
            effective_on=(now + dt.timedelta(days=15)).date(),
            deprecation_at=now if sunset_days else None,
            sunset_at=now + dt.timedelta(days=sunset_days) if sunset_days else None,
        )
        entry.endpoints.set([endpoint_of(privilege)])
        services.evolution_publish(evolution=entry)
        made.append(entry)
    services.evolution_correct(
        evolution=made[1],
        note="Date de retrait confirmée par le fournisseur",
        title=made[1].title + " (confirmé)",
    )
    return made


def test_evolutions_page_filters_and_order(page, live_server, evolutions):
    page.goto(f"{live_server.url}/evolutions/")
    cards = page.locator("article.tkm-evolution h2")
    expect(cards).to_have_count(4)
    assert "Retrait de l'endpoint v2" in cards.nth(0).inner_text()  # soonest sunset first
    assert "Limite abaissée" in cards.nth(1).inner_text()
    expect(page.locator("text=corrigé le").first).to_be_visible()
    assert page.locator("link[type='application/atom+xml']").count() == 1
    save_screenshot(page, "evolutions_list")

    page.select_option("#kind", "parameters")
    page.click("form[role=search] button[type=submit]")
    expect(page.locator("article.tkm-evolution")).to_have_count(1)
    assert "kind=parameters" in page.url
    save_screenshot(page, "evolutions_filtered")

    page.click("article.tkm-evolution h2 a")
    expect(page.locator("h1")).to_contain_text("Paramètre")
    expect(page.locator(".tkm-markdown strong")).to_have_text("vous concerne")


def test_token_page_panel_and_dashboard_badge(page, live_server, evolutions):
    user = UserFactory(email="integ-evol@example.org")
    client = ClientFactory(name="Métropole de Lyon")
    ClientMembershipFactory(client=client, user=user)
    hit = issue_token(client=client, label="Aides aux entreprises", privileges=("entreprises",)).token
    issue_token(client=client, label="Registre des associations", privileges=("associations",))
    login(page, live_server, user.email)
    page.wait_for_selector("#tokens-table")
    expect(page.locator(".tkm-sunset-badge")).to_have_count(2)  # both sunsets fall before their 18 months
    save_screenshot(page, "evolutions_dashboard_badge")
    page.goto(f"{live_server.url}/jetons/{hit.public_id}/")
    panel = page.locator("section#evolutions")
    expect(panel.locator("li")).to_have_count(2)
    expect(panel).to_contain_text("avant l'expiration du jeton")
    panel.scroll_into_view_if_needed()
    save_screenshot(page, "evolutions_token_panel")
