"""Every email the service sends is signed the same way: "L'équipe <SERVICE_NAME>", in its text and HTML parts."""

import datetime as dt
import types

import pytest
from django.conf import settings
from django.core import mail
from django.test import override_settings
from django.utils import translation

from notifications import emails
from portal import reauth
from portal import services as portal_services
from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory
from tokens import services as token_services
from tokens.models import AccessRequest, Privilege
from tokens.services import emails as token_emails

REQUEST_KINDS = (
    "submitted",
    "to_instruct",
    "changes_requested",
    "refused",
    "abandoned",
    "message",
    "validated",
)


def _access_request(applicant):
    client = ClientFactory()
    ClientMembershipFactory(client=client, user=applicant)
    contacts = {
        role: {"name": role, "email": f"{role}@example.org", "phone": "01 02 03 04 05"}
        for role in AccessRequest.CONTACT_ROLES
    }
    return token_services.access_request_create(
        client=client,
        kind="new",
        applicant=applicant,
        data=token_services.AccessRequestData(
            label="Aides",
            privileges=list(Privilege.objects.filter(code="entreprises")),
            project_description="Instruction.",
            legal_basis_nature="loi",
            legal_basis_text="Article L. 114-8 du CRPA",
            legal_basis_url="https://www.legifrance.gouv.fr/",
            contacts=contacts,
            expected_volume=10,
        ),
        token=None,
        prefilled_from=None,
    )


def _every_email(django_capture_on_commit_callbacks) -> dict[str, tuple[str, str]]:
    """(text, html) of each kind of email, sent through the code that sends it in production."""
    parts: dict[str, tuple[str, str]] = {}
    with translation.override("fr"):
        for route in emails.ROUTES:
            for threshold in settings.REMINDER_DAYS:
                _, text, html = emails.render_parts(emails.sample(route, threshold))
                parts[f"reminder_{route}_{threshold}"] = (text, html)

        user = UserFactory(email="someone@example.org", password="pw-0123456789")
        ar = _access_request(user)
        extras = {
            "changes_requested": {"reason": "Précisez."},
            "refused": {"reason": "Hors cadre."},
            "message": {
                "message": types.SimpleNamespace(body="Bonjour", author=user),
                "from_instructor": True,
            },
            "validated": {
                "token": types.SimpleNamespace(expires_at=dt.datetime(2028, 1, 1, tzinfo=dt.UTC)),
                "pickup_url": "https://example.org/pickup",
            },
        }
        senders = {
            f"request_{name}": (
                lambda name=name: token_emails._request_mail(
                    name, to=["a@example.org"], access_request=ar, **extras.get(name, {})
                )
            )
            for name in REQUEST_KINDS
        }
        senders["account_verify"] = lambda: token_services.signup_link_send(email="new@example.org")
        senders["login_link"] = lambda: portal_services.login_link_send(email=user.email)
        senders["password_reset"] = lambda: portal_services.password_reset_send(email=user.email)
        senders["reauth_link"] = lambda: reauth.link_send(user=user)
        for kind, send in senders.items():
            mail.outbox.clear()
            with django_capture_on_commit_callbacks(execute=True):
                send()
            assert len(mail.outbox) == 1, kind
            message = mail.outbox[0]
            html = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
            assert len(html) == 1, kind
            parts[kind] = (message.body, html[0])
    return parts


def _assert_signed(parts, name):
    signature = f"L'équipe {name}"
    html_signature = f'<p style="margin-top:16px;">{signature}</p>'
    for kind, (text, html) in parts.items():
        assert signature in text.splitlines(), kind
        assert html.count(html_signature) == 1, kind
        for other in ("L'équipe tokenmgr", "L'équipe API Entreprise" if name != "API Entreprise" else "\0"):
            assert other not in text and other not in html, kind


@pytest.mark.django_db
def test_every_email_kind_signs_with_the_service_name(django_capture_on_commit_callbacks):
    parts = _every_email(django_capture_on_commit_callbacks)
    assert len(parts) == len(emails.ROUTES) * len(settings.REMINDER_DAYS) + len(REQUEST_KINDS) + 4
    _assert_signed(parts, "API Entreprise")


@pytest.mark.django_db
def test_the_signature_follows_the_setting(django_capture_on_commit_callbacks):
    with override_settings(SERVICE_NAME="Service <Test>"):
        parts = _every_email(django_capture_on_commit_callbacks)
    for kind, (text, html) in parts.items():
        assert "L'équipe Service <Test>" in text.splitlines(), kind
        assert '<p style="margin-top:16px;">L\'équipe Service &lt;Test&gt;</p>' in html, kind
