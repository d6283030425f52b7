"""The dashboard's tools: privileges by their labels, search by a pasted secret, accent-insensitive search, the CSV
export, and the check of a superseded token."""

import csv
import datetime as dt
import io
import logging

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import formats, timezone

from tests.factories import ClientFactory, ClientMembershipFactory, issue_token
from tests.portal.test_long_lists import _bulk_tokens
from tokenmgr.logging import redact
from tokens.models import Token
from tokens.services import token_supersede

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)
URSSAF = "Attestation de vigilance (URSSAF)"


# ------------------------------------------------------------------------------------------------ privileges
def _privilege_html(label: str, code: str) -> str:
    return f'<span class="tkm-privilege">{label} <small class="tkm-privilege__code"><code>{code}</code></small></span>'


def test_dashboard_and_token_page_show_privilege_labels_with_their_code(logged, own_client):
    issued = issue_token(
        client=own_client, label="Marchés", privileges=("attestations_sociales_acoss", "entreprises")
    )
    for url in ("/", reverse("portal_token", args=[issued.token.public_id])):
        body = logged.get(url).content.decode()
        assert _privilege_html(URSSAF, "attestations_sociales_acoss") in body, url
        assert _privilege_html("Entreprises (INSEE)", "entreprises") in body, url
        assert "fr-badge--blue-cumulus" not in body, url  # no more upper-case code badges
    # the privilege filter offers labels too
    body = logged.get("/").content.decode()
    assert (
        f'<option value="attestations_sociales_acoss">{URSSAF} — attestations_sociales_acoss</option>' in body
    )


def test_verify_page_shows_privilege_labels(logged, own_client):
    issued = issue_token(client=own_client, privileges=("attestations_sociales_acoss",))
    body = logged.post(reverse("portal_verify"), {"secret": issued.secret}).content.decode()
    assert _privilege_html(URSSAF, "attestations_sociales_acoss") in body


# ------------------------------------------------------------------------------------------------ search by secret
def test_search_by_secret_opens_own_token_and_is_never_logged(logged, own, caplog):
    caplog.set_level(logging.DEBUG)
    url = reverse("portal_token_search")
    response = logged.post(url, {"secret": own.secret})
    assert response.status_code == 302
    assert response["Location"] == reverse("portal_token", args=[own.token.public_id])
    assert own.secret not in response["Location"]
    assert response["Cache-Control"].startswith("max-age=0") or "no-cache" in response["Cache-Control"]
    assert own.secret not in caplog.text


def test_search_by_secret_uses_the_digest_lookup(logged, own, monkeypatch):
    from portal import views

    seen = []
    real = views.token_by_secret
    monkeypatch.setattr(
        views, "token_by_secret", lambda *, secret: seen.append(secret) or real(secret=secret)
    )
    logged.post(reverse("portal_token_search"), {"secret": own.secret})
    assert seen == [own.secret]


def test_search_by_secret_finds_nothing_outside_the_users_clients(logged, own, foreign):
    for secret in (foreign.secret, "tkm_" + "x" * 40, "legacy-secret-of-any-shape"):
        response = logged.post(reverse("portal_token_search"), {"secret": secret}, follow=True)
        body = response.content.decode()
        assert response.redirect_chain[-1][0] == reverse("portal_dashboard")
        assert "Aucun de vos jetons ne correspond à ce jeton." in body
        assert foreign.token.secret_prefix not in body and secret not in body


def test_search_by_secret_in_a_scoped_session_stays_in_its_client(client, member, own, monkeypatch):
    """A session opened by a reminder's link (one client only) does not find the member's other clients' tokens."""
    other_client = ClientFactory()
    ClientMembershipFactory(client=other_client, user=member)
    other = issue_token(client=other_client)
    monkeypatch.setattr("portal.views._only_client", lambda request: own.token.client_id)
    client.force_login(member)
    response = client.post(reverse("portal_token_search"), {"secret": other.secret})
    assert response["Location"] == reverse("portal_dashboard")
    response = client.post(reverse("portal_token_search"), {"secret": own.secret})
    assert response["Location"] == reverse("portal_token", args=[own.token.public_id])


def test_search_by_secret_is_post_only_empty_refused_and_rate_limited(logged, own, settings):
    url = reverse("portal_token_search")
    assert logged.get(url, {"secret": own.secret}).status_code == 405
    body = logged.post(url, {"secret": ""}, follow=True).content.decode()
    assert "Collez un jeton complet." in body
    settings.RATELIMIT_VERIFY_PER_USER = 1
    with time_machine.travel(NOW, tick=False):
        assert logged.post(url, {"secret": own.secret})["Location"].startswith("/jetons/")
        body = logged.post(url, {"secret": own.secret}, follow=True).content.decode()
    assert "Trop de recherches" in body


def test_a_secret_typed_in_the_search_box_is_dropped_from_the_address(logged, own):
    response = logged.get("/", {"q": own.secret, "status": "active"})
    assert response.status_code == 302
    assert own.secret not in response["Location"] and response["Location"] == "/?status=active"
    body = logged.get(response["Location"]).content.decode()
    assert "Rechercher par jeton complet" in body and own.secret not in body
    # the same for the export link; and the access log line of such a request never shows it
    assert own.secret not in logged.get(reverse("portal_export"), {"q": own.secret})["Location"]
    assert own.secret not in redact(f'"GET /?q={own.secret}&status=active HTTP/1.1" 302 0')


def test_dashboard_offers_the_search_by_secret_form(logged, own):
    body = logged.get("/").content.decode()
    assert f'action="{reverse("portal_token_search")}"' in body
    assert 'type="password" name="secret"' in body
    assert (
        'data-secret-prefix="tkm_" data-display-prefix-length="12" data-secret-form="secret-search"' in body
    )


# ------------------------------------------------------------------------------------------------ accents
def test_search_ignores_accents_and_case(logged, own_client):
    issue_token(client=own_client, label="Échéance des marchés")
    issue_token(client=own_client, label="Subventions")
    for term in ("echeance", "ÉCHÉANCE", "échéance", "marches", "ECHEANCE DES"):
        body = logged.get("/", {"q": term}).content.decode()
        assert "Échéance des marchés" in body and "Subventions" not in body, term


def test_search_ignores_accents_in_client_names_and_finds_only_own_tokens(logged, own_client, foreign):
    # own_client is "Commune de Saint-Martin-des-Champs"; the foreign token's client is searched in vain
    own = issue_token(client=own_client, label="Portail")
    foreign.token.client.name = "Préfecture de l'Hérault"
    foreign.token.client.save()
    body = logged.get("/", {"q": "prefecture"}).content.decode()
    assert foreign.token.secret_prefix not in body
    own_client.name = "Métropole de Lyon"
    own_client.save()
    body = logged.get("/", {"q": "metropole"}).content.decode()
    assert own.token.secret_prefix in body


def test_search_wildcards_are_literal(logged, own_client):
    issue_token(client=own_client, label="Taux 100% remboursé")
    issue_token(client=own_client, label="Autre")
    body = logged.get("/", {"q": "100%"}).content.decode()
    assert "Taux 100% remboursé" in body and "Autre" not in body
    assert "Aucun jeton ne correspond" in logged.get("/", {"q": "_"}).content.decode()


# ------------------------------------------------------------------------------------------------ CSV export
def _csv(response) -> tuple[bytes, list[list[str]]]:
    raw = b"".join(response.streaming_content)
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";"))


@time_machine.travel(NOW, tick=False)
def test_export_is_french_excel_csv_of_the_filtered_list_without_secrets(logged, own_client, foreign):
    issued_at = dt.datetime(2025, 1, 31, 9, 30, tzinfo=dt.UTC)
    wanted = issue_token(
        client=own_client,
        label='=HYPERLINK("http://evil")',
        privileges=("attestations_sociales_acoss", "entreprises"),
        issued_at=issued_at,
    )
    issue_token(client=own_client, label="Autre jeton", privileges=("associations",))
    response = logged.get(reverse("portal_export"), {"privilege": "attestations_sociales_acoss"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="jetons-')
    raw, rows = _csv(response)
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    header, *data = rows
    assert header[:3] == ["Client", "SIRET", "Libellé"] and "Privilèges" in header
    assert len(data) == 1
    line = dict(zip(header, data[0], strict=True))
    assert line["Libellé"] == '\'=HYPERLINK("http://evil")'  # neutralised for the spreadsheet
    assert line["Émis le"] == "31/01/2025"
    assert line["Expire le"] == "31/07/2026"
    assert line["Jours restants"] == str(wanted.token.days_left)
    assert line["Statut"] == "actif"
    assert line["Privilèges"] == f"{URSSAF} ; Entreprises (INSEE)"
    assert line["Codes des privilèges"] == "attestations_sociales_acoss entreprises"
    assert line["Préfixe"] == f"{wanted.token.secret_prefix}…"
    assert wanted.secret.encode() not in raw and wanted.token.secret_digest.encode() not in raw
    assert foreign.token.secret_prefix.encode() not in raw


def test_export_follows_search_status_and_sort(logged, own_client, foreign):
    issue_token(client=own_client, label="Échéance B")
    issue_token(client=own_client, label="Échéance A")
    revoked = issue_token(client=own_client, label="Échéance révoquée")
    Token.objects.filter(pk=revoked.token.pk).update(revoked_at=timezone.now())
    _raw, rows = _csv(
        logged.get(reverse("portal_export"), {"q": "echeance", "sort": "label", "status": "active"})
    )
    assert [r[2] for r in rows[1:]] == ["Échéance A", "Échéance B"]
    _raw, rows = _csv(logged.get(reverse("portal_export"), {"status": "revoked"}))
    header = rows[0]
    line = dict(zip(header, rows[1], strict=True))
    assert line["Statut"] == "révoqué" and line["Jours restants"] == "" and line["Révoqué le"]
    assert len(rows) == 2  # the foreign token is never exported


def test_export_link_keeps_the_current_query(logged, own):
    body = logged.get("/", {"q": "portail", "sort": "-label", "page": "1"}).content.decode()
    assert f'href="{reverse("portal_export")}?q=portail&amp;sort=-label"' in body
    body = logged.get("/").content.decode()
    assert f'href="{reverse("portal_export")}"' in body and "Exporter (CSV)" in body


def test_export_requires_login(client):
    response = client.get(reverse("portal_export"))
    assert response.status_code == 302 and response["Location"].startswith("/connexion/")


def _export_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("portal_export"))
        b"".join(response.streaming_content)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_export_runs_a_constant_number_of_queries(logged, own_client):
    with time_machine.travel(NOW, tick=False):
        _bulk_tokens(own_client, 20, 0)
        small = _export_queries(logged)
        _bulk_tokens(own_client, 300, 20)
        assert _export_queries(logged) == small
    assert small <= 15


# ------------------------------------------------------------------------------------------------ superseded token
def test_verify_superseded_token_says_until_when_and_warns_about_a_dead_successor(logged, own, own_client):
    successor = issue_token(client=own_client, label="Nouveau portail")
    token_supersede(old=own.token, new=successor.token, by=None)
    body = logged.post(reverse("portal_verify"), {"secret": own.secret}).content.decode()
    local = timezone.localtime(own.token.expires_at)
    day, hour = formats.date_format(local, "DATE_FORMAT"), local.strftime("%H:%M")
    assert f"jusqu'au {day} à {hour}" in body.replace("&#x27;", "'")
    assert "ne fonctionne pas" not in body
    Token.objects.filter(pk=successor.token.pk).update(revoked_at=timezone.now())
    body = logged.post(reverse("portal_verify"), {"secret": own.secret}).content.decode()
    assert "Jeton remplacé" in body and "le nouveau jeton ne fonctionne pas (révoqué)" in body
