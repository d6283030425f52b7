import datetime as dt
import uuid

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from notifications.models import ReminderOptOut
from tests.factories import issue_token
from tokens.models import Token, TokenEvent

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)


def test_dashboard_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/connexion/")


def test_dashboard_lists_own_tokens_only(logged, own, foreign):
    response = logged.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Portail des aides" in body
    assert own.token.secret_prefix in body
    assert "Jeton d'un autre client" not in body
    assert foreign.token.secret_prefix not in body
    assert 'href="/incidents/"' in body and 'href="/real_time/"' in body


def test_dashboard_empty_state_without_client(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    response = client.get("/")
    assert response.status_code == 200
    assert "Aucun client rattaché" in response.content.decode()


def test_dashboard_countdown_colours_and_counts(logged, own_client):
    with time_machine.travel(NOW, tick=False):
        now = timezone.now()
        for days, label in [(10, "Rouge"), (25, "Orange"), (80, "Jaune"), (200, "Neutre")]:
            # expires in `days` days: issued 18 months before that
            issued = now + dt.timedelta(days=days) - (now + dt.timedelta(days=548) - now)
            t = issue_token(client=own_client, label=label, issued_at=issued).token
            Token.objects.filter(pk=t.pk).update(expires_at=now + dt.timedelta(days=days))
        body = logged.get("/").content.decode()
        assert (
            "tkm-countdown--red" in body
            and "tkm-countdown--orange" in body
            and "tkm-countdown--yellow" in body
        )
        assert ">2</span> jetons expirent dans les 30 jours" in body
        assert ">1</span> jeton expire dans les 15 jours" in body
        filtered = logged.get("/?within=30").content.decode()
        assert "Rouge" in filtered and "Orange" in filtered and "Jaune" not in filtered


def test_dashboard_filters_search_and_sort(logged, own_client):
    issue_token(client=own_client, label="Alpha", privileges=("entreprises",), origin="api_gouv")
    issue_token(client=own_client, label="Beta", privileges=("associations",), origin="demarches_simplifiees")
    body = logged.get("/?privilege=associations").content.decode()
    assert "Beta" in body and "Alpha" not in body
    body = logged.get("/?origin=api_gouv").content.decode()
    assert "Alpha" in body and "Beta" not in body
    body = logged.get("/?q=alp").content.decode()
    assert "Alpha" in body and "Beta" not in body
    body = logged.get(f"/?q={own_client.siret}").content.decode()
    assert "Alpha" in body and "Beta" in body
    body = logged.get("/?sort=-label").content.decode()
    assert body.index("Beta") < body.index("Alpha")
    assert 'aria-sort="descending"' in body
    body = logged.get("/?status=revoked").content.decode()
    assert "Aucun jeton ne correspond" in body
    # bad input is ignored, never a 500
    assert logged.get("/?within=abc&sort=evil&client=zzz&page=999").status_code == 200


def test_dashboard_paginates_in_constant_queries(logged, own_client, django_assert_max_num_queries, settings):
    settings.PORTAL_PAGE_SIZE = 10
    for i in range(25):
        issue_token(client=own_client, label=f"Jeton {i:02d}", contacts=0)
    with django_assert_max_num_queries(20):
        response = logged.get("/?page=2")
    assert response.status_code == 200
    body = response.content.decode()
    assert "25 jetons" in body and "page 2 sur 3" in body
    assert body.count('href="/jetons/') == 10


def test_long_names_wrap(logged, own_client):
    own_client.name = "Communauté d'agglomération " + "très " * 40 + "longue"
    own_client.save()
    issue_token(client=own_client, label="L" * 200)
    body = logged.get("/").content.decode()
    assert 'class="tkm-wrap tkm-col-client"' in body and "très très" in body


def test_token_page_shows_everything(logged, own):
    response = logged.get(reverse("portal_token", args=[own.token.public_id]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Portail des aides" in body
    assert "api/v3/entreprises_restored" in body  # endpoint of the entreprises privilege
    assert "Rappel J-90" in body and "Expiration" in body
    assert own.token.contacts.first().email in body
    assert reverse("token_renew", args=[own.token.public_id]) in body
    assert own.secret not in body


@pytest.mark.parametrize(
    "name,method",
    [
        ("portal_token", "get"),
        ("portal_token_revoke", "get"),
        ("portal_token_revoke", "post"),
        ("portal_token_decline", "post"),
        ("portal_token_resume", "post"),
    ],
)
def test_other_clients_tokens_are_404(logged, foreign, name, method):
    url = reverse(name, args=[foreign.token.public_id])
    assert getattr(logged, method)(url, {"reason": "x", "confirm": "on"}).status_code == 404
    assert getattr(logged, method)(reverse(name, args=[uuid.uuid4()])).status_code == 404
    foreign.token.refresh_from_db()
    assert foreign.token.revoked_at is None
    assert not ReminderOptOut.objects.exists()


def test_decline_and_resume_are_audited(logged, own):
    url = reverse("portal_token_decline", args=[own.token.public_id])
    response = logged.post(url, follow=True)
    assert "plus aucun rappel" in response.content.decode()
    from notifications.rules import reminders_declined_token_ids

    assert reminders_declined_token_ids([own.token.pk]) == {own.token.pk}
    assert TokenEvent.objects.filter(token=own.token, data__action="reminders_declined").exists()
    body = logged.get(reverse("portal_token", args=[own.token.public_id])).content.decode()
    assert "Reprendre les rappels" in body
    logged.post(reverse("portal_token_resume", args=[own.token.public_id]))
    assert reminders_declined_token_ids([own.token.pk]) == set()
    assert TokenEvent.objects.filter(token=own.token, data__action="reminders_resumed").exists()


def test_decline_refused_after_expiry(logged, own):
    Token.objects.filter(pk=own.token.pk).update(expires_at=timezone.now() - dt.timedelta(days=1))
    response = logged.post(reverse("portal_token_decline", args=[own.token.public_id]), follow=True)
    assert "plus actif" in response.content.decode()
    assert not ReminderOptOut.objects.exists()


def test_revoke_requires_reason_and_confirmation(logged, own):
    url = reverse("portal_token_revoke", args=[own.token.public_id])
    assert "Révoquer définitivement" in logged.get(url).content.decode()
    response = logged.post(url, {"reason": "  ", "confirm": ""})
    assert response.status_code == 200
    body = response.content.decode()
    assert "fr-input-group--error" in body and 'aria-describedby="id_reason-desc-error"' in body
    own.token.refresh_from_db()
    assert own.token.revoked_at is None
    response = logged.post(url, {"reason": "Application arrêtée", "confirm": "on"})
    assert response.status_code == 302
    own.token.refresh_from_db()
    assert own.token.revoked_at is not None and own.token.revocation_reason == "Application arrêtée"


def test_forms_require_csrf(member, own):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(member)
    for url in [
        reverse("portal_token_decline", args=[own.token.public_id]),
        reverse("portal_token_revoke", args=[own.token.public_id]),
        reverse("portal_verify"),
        reverse("portal_calendar"),
        reverse("portal_webhooks"),
    ]:
        assert (
            csrf_client.post(url, {"reason": "x", "confirm": "on", "action": "generate"}).status_code == 403
        )


def test_language_switch_to_english(logged):
    response = logged.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert response.status_code == 302
    body = logged.get("/").content.decode()
    assert "Dashboard" in body or "Tableau de bord" in body  # English when the catalogue is compiled
    assert 'lang="en"' in body


def test_token_page_links_to_requests_and_pickup(logged, own, member):
    from tokens.models import AccessRequest

    req = AccessRequest.objects.create(
        client=own.token.client, kind="renewal", applicant=member, token=own.token, state="submitted"
    )
    body = logged.get(reverse("portal_token", args=[own.token.public_id])).content.decode()
    assert reverse("request_detail", args=[req.public_id]) in body
    # one open request per token: the page shows it instead of offering another one
    assert 'id="pending-request"' in body and reverse("token_extend", args=[own.token.public_id]) not in body
    dashboard = logged.get("/").content.decode()
    assert "fr-badge--new" in dashboard  # pending request badge


def test_revoked_token_shows_revocation_and_no_countdown(logged, member, own, own_client):
    from tokens.services import token_revoke

    other = issue_token(client=own_client, label="Toujours actif")
    token_revoke(token=own.token, by=member, reason="Fuite du secret")
    body = logged.get(reverse("portal_token", args=[own.token.public_id])).content.decode()
    assert "Révoqué le" in body and "Fuite du secret" in body
    assert "Aurait expiré le" in body
    assert "tkm-countdown" not in body and " — —" not in body
    dashboard = logged.get("/").content.decode()
    revoked_row = dashboard[dashboard.index("Portail des aides") :].split("</tr>")[0]
    assert "révoqué le" in revoked_row and "Fuite du secret" in revoked_row
    assert "tkm-countdown" not in revoked_row and "jours" not in revoked_row
    active_row = dashboard[dashboard.index(other.token.label) :].split("</tr>")[0]
    assert "tkm-countdown" in active_row


def test_dashboard_cards_link_to_the_rows_they_count(logged, own_client, foreign, settings):
    """Each card links to the dashboard filter it counts: following it lists exactly that many tokens."""
    import re

    settings.PORTAL_PAGE_SIZE = 100
    with time_machine.travel(NOW, tick=False):
        now = timezone.now()

        def token(days, label, **changes):
            t = issue_token(client=own_client, label=label, contacts=0).token
            Token.objects.filter(pk=t.pk).update(expires_at=now + dt.timedelta(days=days), **changes)
            return t

        newer = token(500, "Successeur")
        token(10, "Remplacé bientôt expiré", renewed_by=newer)
        for days in (10, 25, 80, 200):
            token(days, f"Dans {days} jours")
        token(-3, "Expiré")
        token(40, "Révoqué", revoked_at=now)
        body = logged.get("/").content.decode()
        cards = re.findall(r'<a href="(/\?[^"]*)"><span class="tkm-count__n[^"]*">(\d+)</span>', body)
        assert [int(n) for _, n in cards] == [1, 2, 3, 6, 1]  # 15, 30, 90 days, in service, expired
        for link, n in cards:
            response = logged.get(link.replace("&amp;", "&"))
            page = response.context["page"]
            listed = response.content.decode().split("<tbody>")[1].count("<tr>") if page.object_list else 0
            assert page.paginator.count == listed == int(n), link
