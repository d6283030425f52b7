"""A reminder for a token whose renewal is already submitted: the email says so, and its link leads to the request."""

import datetime as dt
import re

import pytest
from django.core import mail

from notifications import delivery, sweep
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory
from tests.tokens.test_requests import full_data
from tokens import services, validity
from tokens.models import AccessRequest, Privilege, Token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reminder_link_with_a_pending_request_leads_to_it(
    live_server, catalogue, new_context, screenshot, settings
):
    settings.SITE_URL = live_server.url
    settings.REMINDER_DAYS = [90, 60, 30, 15]
    client = ClientFactory(name="Mairie d'Attente")
    applicant = UserFactory(email="demandeur@mairie.example")
    ClientMembershipFactory(client=client, user=applicant)
    contact = ContactFactory(client=client, email="tech@mairie.example", role="technical")
    token = services.token_issue(
        client=client,
        privileges=list(Privilege.objects.filter(code="entreprises")),
        issued_at=validity.start_of_day(validity.today()) - dt.timedelta(days=500),
        origin="api_gouv",
        label="Portail des aides",
        contacts=[contact],
    ).token
    Token.objects.filter(pk=token.pk).update(
        expires_at=validity.start_of_day(validity.today() + dt.timedelta(days=15)) + dt.timedelta(hours=10)
    )
    renewal = services.access_request_create(
        client=client, kind="renewal", applicant=applicant, data=full_data(), token=token
    )
    services.access_request_submit(access_request=renewal, by=applicant)
    mail.outbox.clear()

    sweep.reminders_sweep()
    delivery.reminders_deliver()
    (message,) = [m for m in mail.outbox if m.to == ["tech@mairie.example"]]
    assert "Votre demande de renouvellement du" in message.body and "en cours d'instruction" in message.body
    personal = re.search(r"^(http\S+\?sesame=\S+)$", message.body, re.M).group(1)
    request_url = re.search(r"^Voir la demande : (\S+)$", message.body, re.M).group(1)
    assert request_url.endswith(f"/demandes/{renewal.public_id}/")

    page = new_context().new_page()
    page.set_default_timeout(60_000)
    page.goto(personal)
    page.get_by_role("button", name="Continuer").click()
    # The renewal link lands on the pending request, never on a second form.
    page.wait_for_selector("#pending-request[data-state=submitted]")
    page.click("#pending-request-link")
    page.wait_for_selector("#request-state[data-state=submitted]")
    assert page.url.split("?")[0] == request_url
    screenshot(page, "reminder_pending_request")
    page.goto(request_url)  # the plain link of the email, in the session the personal link opened
    page.wait_for_selector("#request-state[data-state=submitted]")
    assert AccessRequest.objects.get(pk=renewal.pk).state == "submitted"
