"""« Ce secret a fuité » on a token's page: a recent password, a confirmation, then the same policy and messages as a
scanner's report; the exposed token's page offers a pre-filled renewal to replace it."""

import time

import pytest
from django.core import mail
from django.urls import reverse

from tests.factories import ContactFactory, issue_token
from tokenmgr import reauth
from tokens.exposure import EXPOSED_REASON
from tokens.models import AccessRequest, Token, TokenEvent, TokenExposure


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EXPOSED_TOKEN_POLICY = "revoke"
    settings.SITE_URL = "https://jetons.example.gouv.fr"


@pytest.fixture
def leaky(own_client):
    contacts = [
        ContactFactory(client=own_client, email="tech@example.org", role="technical"),
        ContactFactory(client=own_client, email="metier@example.org", role="business"),
    ]
    return issue_token(client=own_client, label="Jeton qui a fui", contacts=contacts, origin="api_gouv")


def test_the_holder_reports_the_leak_and_the_token_is_replaced(
    logged, member, leaky, celery_eager, django_capture_on_commit_callbacks
):
    page = reverse("portal_token", args=[leaky.token.public_id])
    report = reverse("portal_token_exposed", args=[leaky.token.public_id])
    assert f'href="{report}"' in logged.get(page).content.decode()
    assert "Signaler la fuite" in logged.get(report).content.decode()

    response = logged.post(report, {"url": "https://gitlab.example.org/issue/12"})  # not confirmed
    assert response.status_code == 200 and "fr-checkbox-group--error" in response.content.decode()
    assert Token.objects.get(pk=leaky.token.pk).revoked_at is None

    with django_capture_on_commit_callbacks(execute=True):
        response = logged.post(report, {"url": "https://gitlab.example.org/issue/12", "confirm": "on"})
    assert response.status_code == 302 and response.url == page
    token = Token.objects.get(pk=leaky.token.pk)
    assert token.revocation_reason == EXPOSED_REASON
    exposure = TokenExposure.objects.get(token=token)
    assert exposure.reported_by == member and exposure.source == "portal"
    assert TokenEvent.objects.filter(token=token, kind=TokenEvent.Kind.EXPOSED, actor=member).count() == 1
    assert sorted(m.to[0] for m in mail.outbox) == ["metier@example.org", "tech@example.org"]
    assert all(
        "https://gitlab.example.org/issue/12" in m.body for m in mail.outbox
    )  # the holder's own report

    body = logged.get(page).content.decode()
    renew = reverse("token_renew", args=[token.public_id])
    assert "Secret exposé" in body and f'href="{renew}"' in body
    assert f'href="{report}"' not in body  # revoked: nothing left to report
    # The renewal of a token revoked for exposure opens, pre-filled, and can be submitted as a request.
    form = logged.get(renew)
    assert form.status_code == 200 and "Renouveler le jeton" in form.content.decode()
    from tokens.services import AccessRequestData, access_request_create

    created = access_request_create(
        client=token.client,
        kind=AccessRequest.Kind.RENEWAL,
        applicant=member,
        data=AccessRequestData(privileges=list(token.privileges.all())),
        token=token,
    )
    assert created.token == token


def test_a_token_revoked_for_another_reason_still_cannot_be_renewed(logged, member, leaky):
    from tokens.services import token_revoke

    token_revoke(token=leaky.token, by=member, reason="Application arrêtée")
    response = logged.get(reverse("token_renew", args=[leaky.token.public_id]))
    assert response.status_code == 302


def test_reporting_needs_a_recent_password(logged, leaky):
    session = logged.session
    session[reauth.SESSION_KEY] = int(time.time()) - 10 * 3600
    session.save()
    report = reverse("portal_token_exposed", args=[leaky.token.public_id])
    response = logged.post(report, {"confirm": "on"})
    assert response.status_code == 302 and response.url.startswith(reverse("reauth"))
    assert Token.objects.get(pk=leaky.token.pk).revoked_at is None


def test_flag_policy_from_the_portal_only_marks(
    logged, leaky, settings, celery_eager, django_capture_on_commit_callbacks
):
    settings.EXPOSED_TOKEN_POLICY = "flag"
    report = reverse("portal_token_exposed", args=[leaky.token.public_id])
    with django_capture_on_commit_callbacks(execute=True):
        logged.post(report, {"confirm": "on"})
    token = Token.objects.get(pk=leaky.token.pk)
    assert token.revoked_at is None and token.exposures.exists()
    assert len(mail.outbox) == 2
    body = logged.get(reverse("portal_token", args=[token.public_id])).content.decode()
    assert "Remplacez-le au plus vite" in body


def test_another_client_s_token_cannot_be_reported(logged, foreign):
    response = logged.post(reverse("portal_token_exposed", args=[foreign.token.public_id]), {"confirm": "on"})
    assert response.status_code == 404
    assert Token.objects.get(pk=foreign.token.pk).revoked_at is None
