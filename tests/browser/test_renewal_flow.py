"""Reminder link → pre-filled renewal form → submit → instructor validates in the admin → pick-up of the new secret."""

import datetime as dt

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from playwright.sync_api import expect
from sesame.utils import get_query_string

from notifications.recipients import link_users_get_or_create, magic_link_scope
from portal.services import login_link_url
from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory
from tests.tokens.test_requests import full_data
from tokens import selectors, services
from tokens.models import AccessRequest, Token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def reminder_link(live_server, token, email):
    """The personal link of an api_gouv reminder, as the email carries it."""
    user = link_users_get_or_create(emails={email.lower()})[email.lower()]
    path = reverse("token_renew", args=[token.public_id])
    return live_server.url + path + get_query_string(user, scope=magic_link_scope(token.public_id))


def test_reminder_link_to_renewal_to_validation_to_pickup(live_server, catalogue, new_context, screenshot):
    client = ClientFactory(name="Mairie de Navigateur")
    first_applicant = UserFactory(email="ancien.demandeur@mairie.example")
    ClientMembershipFactory(client=client, user=first_applicant)
    instructor = UserFactory(email="instructrice@tokenmgr.example", is_staff=True)
    instructor.user_permissions.add(Permission.objects.get(codename="instruct_accessrequest"))
    original = services.access_request_create(
        client=client, kind="new", applicant=first_applicant, data=full_data()
    )
    services.access_request_submit(access_request=original, by=first_applicant)
    old = services.access_request_validate(access_request=original, by=instructor)
    services.token_secret_reveal(token=old, by=first_applicant)
    contact_email = "technical.x@example.org"

    # 1. The integrator follows the reminder link and lands on the pre-filled renewal form.
    integrator = new_context().new_page()
    integrator.goto(reminder_link(live_server, old, contact_email))
    integrator.get_by_role("button", name="Continuer").click()
    integrator.wait_for_selector("#request-form")
    assert integrator.locator("#renewal-banner").is_visible()
    assert integrator.input_value("#id_project_description") == "Instruction des demandes d'aides."
    assert integrator.input_value("#id_legal_basis_text") == "Article L. 114-8 du CRPA"
    assert integrator.input_value("#id_technical_email") == contact_email
    assert integrator.locator("input[name=privileges][value=entreprises]").is_checked()
    assert not integrator.locator("input[name=privileges][value=associations]").is_checked()
    screenshot(integrator, "renewal_1_prefilled_form")

    # 2. Updates the contacts, adds a privilege, submits.
    integrator.fill("#id_business_email", "nouveau.metier@mairie.example")
    integrator.locator("input[name=privileges][value=associations]").check(force=True)
    integrator.get_by_role("button", name="Soumettre la demande").click()
    integrator.wait_for_selector("#request-state[data-state=submitted]")
    screenshot(integrator, "renewal_2_submitted")
    renewal = AccessRequest.objects.get(kind="renewal")
    assert renewal.token == old and renewal.prefilled_from == original

    # 3. The instructor validates it in the admin, after looking at the diff.
    admin = new_context().new_page()
    admin.goto(
        live_server.url + reverse("admin:login") + "?next=" + reverse("admin:tokens_accessrequest_changelist")
    )
    admin.fill("#id_username", instructor.email)
    admin.fill("#id_password", PASSWORD)
    admin.locator("input[type=submit]").click()
    admin.goto(live_server.url + reverse("admin:tokens_accessrequest_changelist") + "?state__exact=submitted")
    admin.locator("#result_list tbody tr a").first.click()
    added = admin.locator("[data-diff=added]")
    # the privilege by its label, its code beside in monospace
    assert added.inner_text() == "+ Informations déclaratives d'une association associations"
    assert added.locator("code").inner_text() == "associations"
    expect(admin.locator("tr[data-field=business_email][data-changed='1']")).to_have_count(1)
    screenshot(admin, "renewal_3_admin_diff")
    admin.locator("a[data-action=validate]").click()
    admin.get_by_role("button", name="Valider et délivrer le jeton").click()
    admin.wait_for_selector(".messagelist .success")
    screenshot(admin, "renewal_4_admin_validated")
    renewal.refresh_from_db()
    old.refresh_from_db()
    assert renewal.state == "validated" and old.renewed_by == renewal.issued_token
    assert not Token.objects.active().filter(pk=old.pk).exists()

    # 4. The integrator picks up the new secret, shown once. The reminder's link opened the renewal only: the
    #    pick-up page asks for a full sign-in first (here with a login link).
    integrator.reload()
    integrator.locator("#pickup-link").click()
    expect(integrator.locator("#id_username")).to_have_count(1)
    assert "renouvellement de son jeton" in integrator.content()
    pickup = reverse("token_pickup", args=[renewal.issued_token.public_id])
    holder = get_user_model().objects.get(email=contact_email)
    url = login_link_url(user=holder, next_url=pickup)
    integrator.goto(live_server.url + url.removeprefix(settings.SITE_URL))
    integrator.get_by_role("button", name="Continuer").click()
    expect(integrator.get_by_role("button", name="Afficher le secret")).to_have_count(1)
    integrator.get_by_role("button", name="Afficher le secret").click()
    secret = integrator.input_value("#token-secret")
    integrator.locator("#copy-secret").click()
    screenshot(integrator, "renewal_6_secret_shown_once")
    now = dt.datetime.now(dt.UTC)
    check = selectors.token_check(secret=secret, now=now)
    assert check.outcome == selectors.TokenCheck.OK
    assert sorted(check.privileges) == ["associations", "entreprises", "etablissements"]
    integrator.goto(live_server.url + reverse("token_pickup", args=[renewal.issued_token.public_id]))
    assert secret not in integrator.content()
    assert integrator.locator("#secret-prefix").inner_text() == secret[:12] + "…"
    screenshot(integrator, "renewal_7_prefix_only")
