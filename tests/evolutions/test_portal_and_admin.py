"""The integrator's token page lists the evolutions that affect the token; the dashboard flags tokens whose
privileges hit a sunset before their own expiry (bounded queries); staff publish and correct in the admin."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from evolutions import selectors, services
from evolutions.models import Evolution, EvolutionNotice, EvolutionStatus
from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory, issue_token

from .conftest import endpoint_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_tokens():
    user = UserFactory()
    client = ClientFactory(name="Commune d'Évolution")
    ClientMembershipFactory(client=client, user=user)
    hit = issue_token(client=client, privileges=("entreprises",), label="Jeton concerné").token
    spared = issue_token(client=client, privileges=("associations",), label="Jeton épargné").token
    return user, hit, spared


def removal(make_evolution, privilege="entreprises", days=60, title="Retrait de v2"):
    now = timezone.now()
    entry = make_evolution(
        title=title,
        endpoints=[endpoint_of(privilege)],
        deprecation_at=now,
        sunset_at=now + dt.timedelta(days=days),
    )
    services.evolution_publish(evolution=entry)
    return entry


def test_token_page_shows_the_evolutions_that_affect_it(client, member_tokens, make_evolution):
    user, hit, spared = member_tokens
    removal(make_evolution)
    client.force_login(user)
    html = client.get(f"/jetons/{hit.public_id}/").content.decode()
    assert "Évolutions qui concernent ce jeton" in html and "Retrait de v2" in html
    assert "avant l'expiration du jeton" in html
    html = client.get(f"/jetons/{spared.public_id}/").content.decode()
    assert "Retrait de v2" not in html and "Aucune évolution publiée ne concerne" in html


def test_dashboard_flags_tokens_hit_by_a_sunset_before_their_expiry(client, member_tokens, make_evolution):
    user, hit, spared = member_tokens
    removal(make_evolution)
    removal(
        make_evolution, privilege="associations", days=800, title="Après l'expiration"
    )  # after its 18 months
    client.force_login(user)
    html = client.get("/").content.decode()
    assert html.count("tkm-sunset-badge") == 1
    assert f"/jetons/{hit.public_id}/#evolutions" in html


def test_sunset_selector_is_one_query_whatever_the_number_of_tokens(member_tokens, make_evolution):
    _, hit, spared = member_tokens
    removal(make_evolution)
    more = [issue_token(privileges=("entreprises",)).token.pk for _ in range(5)]
    with CaptureQueriesContext(connection) as queries:
        flagged = selectors.sunset_before_expiry(token_ids=[hit.pk, spared.pk, *more])
    assert flagged == {hit.pk, *more} and len(queries) == 1
    # Past sunsets and drafts flag nothing.
    past = timezone.now() - dt.timedelta(days=1)
    Evolution.objects.update(deprecation_at=past, sunset_at=past)
    assert selectors.sunset_before_expiry(token_ids=[hit.pk]) == set()


@pytest.fixture
def staff(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def form_data(entry: Evolution, **changes) -> dict:
    data = {
        "kind": entry.kind,
        "title": entry.title,
        "body": entry.body,
        "endpoints": [e.pk for e in entry.endpoints.all()],
        "effective_on": entry.effective_on.isoformat(),
        "deprecation_at_0": "",
        "deprecation_at_1": "",
        "sunset_at_0": "",
        "sunset_at_1": "",
        "correction_note": "",
        "revisions-TOTAL_FORMS": "0",
        "revisions-INITIAL_FORMS": str(entry.revisions.count()),
        "revisions-MIN_NUM_FORMS": "0",
        "revisions-MAX_NUM_FORMS": "1000",
    }
    data.update(changes)
    return data


def test_admin_publish_button_then_correction_needs_a_note(staff, member_tokens, make_evolution):
    entry = make_evolution(endpoints=[endpoint_of("entreprises")])
    url = f"/admin/evolutions/evolution/{entry.pk}/change/"
    response = staff.post(url, form_data(entry, _publish="1"))
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.status == EvolutionStatus.PUBLISHED and EvolutionNotice.objects.count() == 1
    response = staff.post(url, form_data(entry, title="Titre corrigé"))
    assert response.status_code == 200 and "sans motif" in response.content.decode()
    entry.refresh_from_db()
    assert entry.title != "Titre corrigé" and entry.revision == 1
    response = staff.post(url, form_data(entry, title="Titre corrigé", correction_note="Faute de frappe"))
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.title == "Titre corrigé" and entry.revision == 2
    assert entry.revisions.get(number=2).note == "Faute de frappe"


def test_admin_refuses_a_sunset_before_its_deprecation(staff, make_evolution):
    entry = make_evolution()
    response = staff.post(
        f"/admin/evolutions/evolution/{entry.pk}/change/",
        form_data(
            entry,
            deprecation_at_0="2027-03-01",
            deprecation_at_1="00:00:00",
            sunset_at_0="2027-02-01",
            sunset_at_1="00:00:00",
        ),
    )
    assert response.status_code == 200 and "ne peut précéder" in response.content.decode()


def test_admin_publish_action(staff, member_tokens, make_evolution):
    entries = [make_evolution(endpoints=[endpoint_of("entreprises")]) for _ in range(2)]
    response = staff.post(
        "/admin/evolutions/evolution/",
        {"action": "publish", "_selected_action": [e.pk for e in entries]},
    )
    assert response.status_code == 302
    assert set(Evolution.objects.values_list("status", flat=True)) == {EvolutionStatus.PUBLISHED}
    assert EvolutionNotice.objects.count() == 1  # one person, one digest for both
