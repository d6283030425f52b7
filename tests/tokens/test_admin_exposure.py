"""Staff see exposed tokens: the « exposés » filter, where each secret was seen on the token's page, the `exposed`
audit events; registered reporters get a signing key shown once."""

import pytest
from django.urls import reverse

from tests.factories import issue_token
from tokens.exposure import token_exposure_record
from tokens.models import ExposureReporter, TokenEvent

CHANGELIST = reverse("admin:tokens_token_changelist")
SEEN_AT = "https://github.com/someone/project/blob/main/.env"


@pytest.fixture
def tokens(db):
    exposed = issue_token(label="exposé")
    clean = issue_token(label="intact")
    token_exposure_record(token=exposed.token, url=SEEN_AT, source="github")
    return exposed, clean


def test_exposed_filter(admin_client, tokens):
    exposed, clean = tokens
    labels = lambda r: {t.label for t in r.context["cl"].result_list}  # noqa: E731
    assert labels(admin_client.get(CHANGELIST, {"expose": "oui"})) == {"exposé"}
    assert labels(admin_client.get(CHANGELIST, {"expose": "non"})) == {"intact"}
    assert "exposés" in admin_client.get(CHANGELIST).content.decode()


def test_token_page_shows_where_the_secret_was_seen_and_the_audit_trail(admin_client, tokens):
    exposed, _ = tokens
    body = admin_client.get(reverse("admin:tokens_token_change", args=[exposed.token.pk])).content.decode()
    assert SEEN_AT in body and "github" in body
    assert exposed.secret not in body
    events = admin_client.get(reverse("admin:tokens_tokenevent_changelist"), {"kind": "exposed"})
    assert [e.token_id for e in events.context["cl"].result_list] == [exposed.token.pk]
    assert TokenEvent.objects.get(kind="exposed").data["url"] == SEEN_AT
    assert (
        admin_client.get(reverse("admin:tokens_token_issue")).status_code == 200
    )  # the issue page still opens


def test_reporter_key_is_generated_and_shown_once(admin_client, db):
    response = admin_client.post(
        reverse("admin:tokens_exposurereporter_add"), {"name": "scanner", "active": "on"}
    )
    assert response.status_code == 200
    reporter = ExposureReporter.objects.get(name="scanner")
    assert len(reporter.key) >= 40 and reporter.key in response.content.decode()
    assert "no-cache" in response["Cache-Control"]
    change = admin_client.get(reverse("admin:tokens_exposurereporter_change", args=[reporter.pk]))
    assert reporter.key not in change.content.decode()


def test_saving_an_exposed_token_s_form_needs_no_exposure_formset(admin_client, tokens):
    exposed, _ = tokens
    url = reverse("admin:tokens_token_change", args=[exposed.token.pk])
    response = admin_client.post(
        url, {"label": "renommé", "contacts": [c.pk for c in exposed.token.contacts.all()]}
    )
    assert response.status_code == 302
    exposed.token.refresh_from_db()
    assert exposed.token.label == "renommé" and exposed.token.exposures.count() == 1
