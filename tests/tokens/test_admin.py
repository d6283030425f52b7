import csv
import datetime as dt
import io
import re
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import ClientFactory, ContactFactory, issue_token
from tokens.models import Privilege, Token, TokenEvent
from tokens.services import token_issue, token_revoke, token_supersede

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 3, 10, 11, 0, tzinfo=PARIS)
CHANGELIST = reverse("admin:tokens_token_changelist")
ADD = reverse("admin:tokens_token_add")
ISSUE = reverse("admin:tokens_token_issue")


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


def issued_with_days_left(days: int, **kwargs):
    """A token whose expiry day is `days` calendar days after NOW's day (18 months after issue)."""
    expiry_day = NOW.date() + dt.timedelta(days=days)
    year, month = expiry_day.year, expiry_day.month - 18
    while month < 1:
        month += 12
        year -= 1
    issued_at = dt.datetime(year, month, expiry_day.day, 10, 0, tzinfo=PARIS)
    issued = issue_token(issued_at=issued_at, **kwargs)
    assert issued.token.days_left == days
    return issued


def labels(response) -> set[str]:
    return {t.label for t in response.context["cl"].result_list}


@pytest.fixture
def stages(db):
    """One token per status, with distinct labels."""
    active = issue_token(label="neuf")
    expiring = issued_with_days_left(20, label="bientôt")
    expired = issue_token(issued_at=dt.datetime(2024, 1, 5, 10, 0, tzinfo=PARIS), label="expiré")
    revoked = issue_token(label="révoqué")
    token_revoke(token=revoked.token, by=None, reason="fuite")
    old = issued_with_days_left(40, label="remplacé")
    successor = issue_token(client=old.token.client, label="successeur")
    token_supersede(old=old.token, new=successor.token, by=None)
    legacy = issue_token(issued_at=dt.datetime(2019, 3, 1, 10, 0, tzinfo=PARIS), label="legacy 2019")
    return {
        "active": active,
        "expiring": expiring,
        "expired": expired,
        "revoked": revoked,
        "superseded": old,
        "legacy": legacy,
    }


# ------------------------------------------------------------------------------
# Changelist: columns, filters, search, query count
# ------------------------------------------------------------------------------
def test_changelist_columns(admin_client, stages):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    content = response.content.decode()
    for header in (
        "Client",
        "Libellé",
        "Préfixe",
        "Origine",
        "Émis le",
        "Expire le",
        "Jours restants",
        "Statut",
    ):
        assert header in content
    rows = {t.label: t for t in response.context["cl"].result_list}
    assert rows["bientôt"].current_status == "expiring"
    assert rows["remplacé"].current_status == "superseded"
    assert '<td class="field-days_left_display">20</td>' in content
    assert stages["expiring"].token.secret_prefix in content
    assert "expire bientôt" in content
    assert stages["expiring"].secret not in content


def test_changelist_revoked_shows_who_when_why_and_no_countdown(admin_client, admin_user):
    revoked = issue_token(label="révoqué par admin")
    token_revoke(token=revoked.token, by=admin_user, reason="fuite du secret")
    content = admin_client.get(CHANGELIST).content.decode()
    row = content[content.index("révoqué par admin") :].split("</tr>")[0]
    assert '<td class="field-days_left_display">—</td>' in row
    assert "révoqué" in row and admin_user.get_username() in row and "fuite du secret" in row
    assert "10/03/2026" in row


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", {"neuf", "successeur"}),
        ("expiring", {"bientôt"}),
        ("expired", {"expiré", "legacy 2019"}),
        ("revoked", {"révoqué"}),
        ("superseded", {"remplacé"}),
    ],
)
def test_status_filter(admin_client, stages, status, expected):
    response = admin_client.get(CHANGELIST, {"statut": status})
    assert response.status_code == 200
    assert labels(response) == expected


def test_origin_filter(admin_client, stages):
    response = admin_client.get(CHANGELIST, {"origin__exact": "demarches_simplifiees"})
    assert labels(response) == {"legacy 2019"}
    response = admin_client.get(CHANGELIST, {"origin__exact": "api_gouv"})
    assert "legacy 2019" not in labels(response)
    assert "neuf" in labels(response)


def test_expiry_window_filter(admin_client):
    for days in (0, 10, 15, 16, 30, 31, 60, 90, 91, 300):
        issued_with_days_left(days, label=f"J-{days}")
    issue_token(issued_at=dt.datetime(2024, 9, 10, 10, 0, tzinfo=PARIS), label="expiré ce matin")
    issue_token(issued_at=dt.datetime(2023, 1, 1, 10, 0, tzinfo=PARIS), label="expiré depuis longtemps")

    def window(value):
        return labels(admin_client.get(CHANGELIST, {"echeance": value}))

    # J-0 expires today at 10:00, i.e. before NOW (11:00): already expired.
    assert window("15") == {"J-10", "J-15"}
    assert window("30") == {"J-10", "J-15", "J-16", "J-30"}
    assert window("60") == {"J-10", "J-15", "J-16", "J-30", "J-31", "J-60"}
    assert window("90") == {"J-10", "J-15", "J-16", "J-30", "J-31", "J-60", "J-90"}
    assert window("expired") == {"J-0", "expiré ce matin", "expiré depuis longtemps"}


def test_filters_combine(admin_client, stages):
    token_revoke(token=stages["expiring"].token, by=None, reason="test")
    assert labels(admin_client.get(CHANGELIST, {"echeance": "30", "statut": "revoked"})) == {"bientôt"}
    assert labels(admin_client.get(CHANGELIST, {"echeance": "30", "statut": "expiring"})) == set()


def test_search(admin_client):
    client = ClientFactory(name="Mairie de Trifouilly", siret="21750001600019")
    contact = ContactFactory(client=client, email="Dev@Trifouilly.fr")
    issued = issue_token(client=client, contacts=[contact], label="Portail usagers")
    issue_token(label="autre")

    for term in (
        "21750001600019",
        "trifouilly",
        "portail",
        issued.token.secret_prefix,
        "dev@trifouilly.fr",
    ):
        response = admin_client.get(CHANGELIST, {"q": term})
        assert labels(response) == {"Portail usagers"}, term


def test_changelist_query_count_is_constant(admin_client):
    def count_queries():
        with CaptureQueriesContext(connection) as ctx:
            response = admin_client.get(CHANGELIST)
        assert response.status_code == 200
        return len(ctx.captured_queries), len(response.context["cl"].result_list)

    issue_token(contacts=2)
    issue_token(contacts=1)
    few, n_few = count_queries()
    for _ in range(6):
        issue_token(privileges=("entreprises", "exercices", "associations"), contacts=2)
    many, n_many = count_queries()
    assert (n_few, n_many) == (2, 8)
    assert few == many


def test_other_admin_pages(admin_client, stages):
    token = stages["revoked"].token
    client = token.client
    privilege = Privilege.objects.get(code="entreprises")
    for url in (
        reverse("admin:tokens_client_changelist") + "?q=" + client.siret,
        reverse("admin:tokens_client_change", args=[client.pk]),
        reverse("admin:tokens_contact_changelist") + "?role__exact=technical",
        reverse("admin:tokens_privilege_changelist"),
        reverse("admin:tokens_privilege_change", args=[privilege.pk]),
        reverse("admin:tokens_endpoint_changelist"),
        reverse("admin:tokens_tokenevent_changelist") + "?kind__exact=revoked",
    ):
        assert admin_client.get(url).status_code == 200, url
    events = admin_client.get(reverse("admin:tokens_tokenevent_changelist"))
    assert "fuite" in events.content.decode()
    event = TokenEvent.objects.filter(token=token).first()
    page = admin_client.get(reverse("admin:tokens_tokenevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert admin_client.post(reverse("admin:tokens_tokenevent_delete", args=[event.pk])).status_code == 403


# ------------------------------------------------------------------------------
# Revoke action
# ------------------------------------------------------------------------------
def test_revoke_asks_a_reason_then_revokes(admin_client, admin_user):
    first, second = issue_token(label="un"), issue_token(label="deux")
    selection = {
        "action": "revoke_tokens",
        "_selected_action": [first.token.pk, second.token.pk],
        "index": "0",
    }
    assert admin_client.get("/v2/privileges", {"token": first.secret}).status_code == 200

    confirm = admin_client.post(CHANGELIST, selection)
    assert confirm.status_code == 200
    assert "admin/tokens/token/revoke_confirmation.html" in [t.name for t in confirm.templates]
    assert 'name="reason"' in confirm.content.decode()
    assert not Token.objects.revoked().exists()

    missing = admin_client.post(CHANGELIST, {**selection, "confirm": "yes", "reason": "   "})
    assert missing.status_code == 200
    assert missing.context["form"].errors["reason"]
    assert not Token.objects.revoked().exists()

    done = admin_client.post(CHANGELIST, {**selection, "confirm": "yes", "reason": "Fuite du secret"})
    assert done.status_code == 302
    for issued in (first, second):
        token = Token.objects.get(pk=issued.token.pk)
        assert token.revoked_at == NOW
        assert token.revoked_by == admin_user
        assert token.revocation_reason == "Fuite du secret"
        event = TokenEvent.objects.get(token=token, kind=TokenEvent.Kind.REVOKED)
        assert (event.actor, event.reason) == (admin_user, "Fuite du secret")
    response = admin_client.get("/v2/privileges", {"token": first.secret})
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "revoked_token"


def test_revoke_reports_already_revoked(admin_client):
    fresh, old = issue_token(label="frais"), issue_token(label="ancien")
    token_revoke(token=old.token, by=None, reason="première fois")
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "revoke_tokens",
            "_selected_action": [fresh.token.pk, old.token.pk],
            "index": "0",
            "confirm": "yes",
            "reason": "nettoyage",
        },
        follow=True,
    )
    assert response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    assert any("1 jeton révoqué" in t for t in texts)
    assert any("Déjà révoqués" in t and "ancien" in t for t in texts)
    assert Token.objects.get(pk=old.token.pk).revocation_reason == "première fois"
    assert TokenEvent.objects.filter(token=old.token, kind=TokenEvent.Kind.REVOKED).count() == 1


# ------------------------------------------------------------------------------
# CSV export
# ------------------------------------------------------------------------------
def test_export_csv(admin_client, stages):
    contact = stages["expiring"].token.contacts.get()
    selected = [stages["expiring"].token.pk, stages["revoked"].token.pk]
    response = admin_client.post(
        CHANGELIST, {"action": "export_csv", "_selected_action": selected, "index": "0"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == [
        "identifiant public",
        "client",
        "SIRET",
        "libellé",
        "préfixe",
        "privilèges",
        "origine",
        "émis le",
        "expire le",
        "jours restants",
        "statut",
        "contacts",
    ]
    by_label = {r[3]: r for r in rows[1:]}
    assert set(by_label) == {"bientôt", "révoqué"}
    token = stages["expiring"].token
    row = by_label["bientôt"]
    assert row[0] == str(token.public_id)
    assert row[1:3] == [token.client.name, token.client.siret]
    assert row[4] == token.secret_prefix
    assert row[5] == "entreprises etablissements"
    assert row[6] == "api_gouv"
    assert row[7].startswith("2024-09-30T10:00:00+02:00")
    assert row[8].startswith("2026-03-30T10:00:00+02:00")
    assert row[9:] == ["20", "expiring", contact.email]
    assert by_label["révoqué"][10] == "revoked"
    for issued in stages.values():
        assert issued.secret not in body
        assert issued.token.secret_digest not in body


# ------------------------------------------------------------------------------
# Issuing from the admin
# ------------------------------------------------------------------------------
def test_admin_issue_shows_the_secret_once(admin_client, admin_user):
    client = ClientFactory()
    contact = ContactFactory(client=client)
    assert admin_client.get(ADD).url == ISSUE
    assert admin_client.get(ISSUE).status_code == 200
    response = admin_client.post(
        ISSUE,
        {
            "client": client.pk,
            "label": "Portail RH",
            "privileges": list(
                Privilege.objects.filter(code__in=["entreprises", "exercices"]).values_list("pk", flat=True)
            ),
            "issued_at_0": "2026-03-10",
            "issued_at_1": "09:30:00",
            "origin": "",
            "contacts": [contact.pk],
            "new_contacts": "rh@mairie.example\n",
            "_save": "Enregistrer",
        },
    )
    assert response.status_code == 302, response.context and response.context.get("errors")
    token = Token.objects.get(label="Portail RH")
    assert response.url == reverse("admin:tokens_token_issued", args=[token.public_id])
    response = admin_client.get(response.url)
    assert "admin/tokens/token/issued.html" in [t.name for t in response.templates]
    assert "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    assert secret.startswith("tkm_")
    assert secret in response.content.decode()

    assert token.client == client
    assert token.issued_at == dt.datetime(2026, 3, 10, 9, 30, tzinfo=PARIS)
    assert token.expires_at == dt.datetime(2027, 9, 10, 9, 30, tzinfo=PARIS)
    assert token.origin == "api_gouv"
    assert sorted(token.contacts.values_list("email", flat=True)) == sorted(
        [contact.email, "rh@mairie.example"]
    )
    assert TokenEvent.objects.get(token=token, kind=TokenEvent.Kind.ISSUED).actor == admin_user

    api = admin_client.get("/v2/privileges", {"token": secret})
    assert api.status_code == 200
    assert api.json() == {"privileges": ["entreprises", "exercices"]}

    for url in (
        reverse("admin:tokens_token_change", args=[token.pk]),
        CHANGELIST,
        reverse("admin:tokens_token_history", args=[token.pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert secret not in page
        assert token.secret_digest not in page
    assert (
        token.secret_prefix
        in admin_client.get(reverse("admin:tokens_token_change", args=[token.pk])).content.decode()
    )


def test_admin_issue_legacy_origin_and_refusals(admin_client):
    client, other = ClientFactory(), ClientFactory()
    foreign = ContactFactory(client=other)
    data = {
        "client": client.pk,
        "label": "ancien",
        "privileges": [Privilege.objects.get(code="entreprises").pk],
        "issued_at_0": "2026-03-10",
        "issued_at_1": "09:30:00",
        "origin": "demarches_simplifiees",
    }
    bad = admin_client.post(ISSUE, {**data, "contacts": [foreign.pk]})
    assert bad.status_code == 200
    assert "contacts" in bad.context["adminform"].form.errors
    no_privilege = admin_client.post(ISSUE, {**data, "privileges": []})
    assert "privileges" in no_privilege.context["adminform"].form.errors
    bad_email = admin_client.post(ISSUE, {**data, "new_contacts": "pas-un-email"})
    assert "new_contacts" in bad_email.context["adminform"].form.errors
    assert not Token.objects.exists()

    ok = admin_client.post(ISSUE, data)
    assert ok.status_code == 302
    assert Token.objects.get().origin == "demarches_simplifiees"


def test_change_view_edits_label_and_contacts_only(admin_client, admin_user):
    issued = issue_token(label="avant", contacts=1)
    token = issued.token
    previous_contact = token.contacts.get()
    contact = ContactFactory(client=token.client)
    url = reverse("admin:tokens_token_change", args=[token.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    form_fields = set(page.context["adminform"].form.fields)
    assert form_fields == {"label", "contacts"}
    response = admin_client.post(
        url,
        {
            "label": "après",
            "contacts": [contact.pk],
            "privileges": [Privilege.objects.get(code="exercices").pk],
            "issued_at": "2020-01-01",
            "expires_at": "2030-01-01",
            "secret_digest": "0" * 64,
        },
    )
    assert response.status_code == 302
    fresh = Token.objects.get(pk=token.pk)
    assert fresh.label == "après"
    assert list(fresh.contacts.all()) == [contact]
    assert sorted(fresh.privileges.values_list("code", flat=True)) == ["entreprises", "etablissements"]
    assert (fresh.issued_at, fresh.expires_at, fresh.secret_digest) == (
        token.issued_at,
        token.expires_at,
        token.secret_digest,
    )
    event = TokenEvent.objects.get(token=token, kind=TokenEvent.Kind.UPDATED)
    assert event.actor == admin_user
    assert set(event.data["fields"]) == {"label", "contacts"}
    assert event.data["changes"] == {
        "label": {"old": "avant", "new": "après"},
        "contacts": {
            "old": [previous_contact.email],
            "new": [contact.email],
        },
    }
    assert admin_client.get("/v2/privileges", {"token": issued.secret}).status_code == 200


def test_admin_token_forms_save_the_links(admin_client):
    """Privileges and contacts have link models of their own: the admin's forms still show and save them."""
    client = ClientFactory()
    first, second = ContactFactory(client=client), ContactFactory(client=client)
    page = admin_client.get(ISSUE).content.decode()
    assert (
        'class="selectfilter" data-field-name="privilèges" data-is-stacked="0"' in page
    )  # two-list selector
    assert '<label class="required" for="id_privileges">Privilèges' in page
    assert re.search(r'id="id_privileges_helptext">\s*<div>Maintenez appuyé', page)  # the admin's usual help
    assert 'data-model-name="token" data-field-name="contacts"' in page  # autocomplete
    codes = ["entreprises", "exercices"]
    response = admin_client.post(
        ISSUE,
        {
            "client": client.pk,
            "label": "liens",
            "privileges": list(Privilege.objects.filter(code__in=codes).values_list("pk", flat=True)),
            "issued_at_0": "2026-03-10",
            "issued_at_1": "09:30:00",
            "contacts": [first.pk],
        },
    )
    assert response.status_code == 302
    token = Token.objects.get(label="liens")
    links = Token.privileges.through.objects.filter(token=token)
    assert sorted(links.values_list("privilege__code", flat=True)) == codes
    contact_links = Token.contacts.through.objects.filter(token=token)

    url = reverse("admin:tokens_token_change", args=[token.pk])
    form = admin_client.get(url).context["adminform"].form
    assert form.fields["contacts"].label == "Contacts"
    assert list(form.initial["contacts"]) == [first]
    for chosen in ([first.pk, second.pk], [second.pk], []):
        assert admin_client.post(url, {"label": "liens", "contacts": chosen}).status_code == 302
        assert sorted(contact_links.values_list("contact_id", flat=True)) == sorted(chosen)
    foreign = ContactFactory()
    refused = admin_client.post(url, {"label": "liens", "contacts": [foreign.pk]})
    assert "contacts" in refused.context["adminform"].form.errors
    assert not contact_links.exists()
    assert sorted(token.privileges.values_list("code", flat=True)) == codes


def test_tokens_cannot_be_deleted(admin_client, issued):
    response = admin_client.post(
        reverse("admin:tokens_token_delete", args=[issued.token.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert Token.objects.filter(pk=issued.token.pk).exists()


def test_superseded_token_links_its_successor(admin_client):
    old = issue_token(label="vieux")
    new = token_issue(
        client=old.token.client,
        privileges=list(old.token.privileges.all()),
        label="neuf",
        replaces=old.token,
    )
    page = admin_client.get(reverse("admin:tokens_token_change", args=[new.token.pk])).content.decode()
    assert reverse("admin:tokens_token_change", args=[old.token.pk]) in page
