"""The request journey in Chromium: an expired token leads to a new request, "Renouveler" on a token with a pending
extension shows that extension, and a PDF attached to a form with errors is kept until the form is sent."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token
from tests.tokens.test_requests import full_data, privs
from tokens import services
from tokens.models import AccessRequest, PendingUpload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
PDF = b"%PDF-1.4\n% deliberation\n"


@pytest.fixture
def integrator(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    user = UserFactory(email="integ@example.org", first_name="Inès", last_name="Tégratrice")
    client = ClientFactory(name="Mairie de Navigateur")
    ClientMembershipFactory(client=client, user=user)
    return user, client


def login(page, live_server, user, next_url):
    page.goto(f"{live_server.url}{reverse('login')}?next={next_url}")
    page.fill("#id_username", user.email)
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/connexion/'] button[type=submit]")


def fill_contacts(page):
    for role in ("requester", "technical", "business"):
        page.fill(f"#id_{role}_name", f"{role.title()} Nom")
        page.fill(f"#id_{role}_email", f"{role}@mairie.example")


def test_expired_token_leads_to_a_new_request(page, live_server, integrator, screenshot):
    user, client = integrator
    expired = issue_token(
        client=client,
        label="Ancien portail",
        privileges=("associations",),
        issued_at=timezone.now() - dt.timedelta(days=600),
    ).token
    login(page, live_server, user, reverse("portal_token", args=[expired.public_id]))
    expect(page.locator("#new-request-link")).to_be_visible()
    assert "aucune action" not in page.content()
    screenshot(page, "journey_1_expired_token")
    page.locator("#new-request-link").click()
    page.wait_for_selector("#request-form")
    expect(page.locator("#replacing-banner")).to_be_visible()
    assert page.locator("input[name=privileges][value=associations]").is_checked()
    assert page.input_value("#id_requester_email") == user.email
    expect(page.locator(".fr-breadcrumb")).to_contain_text("Ancien portail")
    screenshot(page, "journey_2_new_request_form")
    page.fill("#id_project_description", "Subventions aux associations.")
    page.fill("#id_expected_volume", "5")
    page.select_option("#id_legal_basis_nature", "loi")
    page.fill("#id_legal_basis_text", "Loi du 1er juillet 1901")
    page.fill("#id_legal_basis_url", "https://www.legifrance.gouv.fr/loda/id/LEGITEXT000006069570")
    fill_contacts(page)
    page.get_by_role("button", name="Soumettre la demande").click()
    page.wait_for_selector("#request-state[data-state=submitted]")
    new = AccessRequest.objects.get()
    assert (new.client, new.token, new.kind) == (client, expired, "new")
    # back on the token page: the request in progress, not a second one
    page.goto(live_server.url + reverse("portal_token", args=[expired.public_id]))
    expect(page.locator("#pending-request")).to_be_visible()
    expect(page.locator("#new-request-link")).to_have_count(0)


def test_renew_with_a_pending_extension_shows_it(page, live_server, integrator, screenshot):
    user, client = integrator
    token = issue_token(client=client, label="Portail des aides").token
    extension = services.access_request_create(
        client=client,
        kind="extension",
        applicant=user,
        data=full_data(privileges=privs("associations")),
        token=token,
    )
    services.access_request_submit(access_request=extension, by=user)
    # the reminder's "Renouveler" link
    login(page, live_server, user, reverse("token_renew", args=[token.public_id]))
    expect(page.locator("#pending-request")).to_be_visible()
    expect(page.locator("#pending-request")).to_contain_text("extension du périmètre")
    expect(page.locator("#pending-request")).to_contain_text("soumise")
    expect(page.locator("#request-form")).to_have_count(0)
    screenshot(page, "journey_3_renew_shows_pending_extension")
    page.goto(live_server.url + reverse("portal_token", args=[token.public_id]))
    expect(page.locator("#renew-link")).to_have_count(0)
    page.locator("#pending-request-link").click()
    page.wait_for_selector("#request-state[data-state=submitted]")
    assert page.url.endswith(reverse("request_detail", args=[extension.public_id]))
    assert AccessRequest.objects.count() == 1


def test_pdf_is_kept_across_an_error(page, live_server, integrator, screenshot, tmp_path):
    user, client = integrator
    contact = ContactFactory(client=client, role="technical", email="tech@mairie.example", name="Théo Tech")
    token = issue_token(client=client, label="Jeton importé", contacts=[contact], origin="api_gouv").token
    login(page, live_server, user, reverse("token_renew", args=[token.public_id]))
    page.wait_for_selector("#request-form")
    banner = page.locator("#renewal-banner")
    expect(banner).to_contain_text("pré-rempli à partir du jeton")
    expect(banner).to_contain_text("la description du projet")
    assert page.input_value("#id_technical_email") == "tech@mairie.example"
    expect(page.locator(".fr-upload-group .fr-hint-text")).to_contain_text("Format accepté : PDF")
    document = tmp_path / "deliberation-2026.pdf"
    document.write_bytes(PDF)
    page.set_input_files("#id_legal_basis_document", str(document))
    page.select_option("#id_legal_basis_nature", "deliberation")
    page.fill("#id_legal_basis_text", "Délibération du conseil municipal du 3 mars 2026")
    page.fill("#id_expected_volume", "12")
    fill_contacts(page)
    # the description is missing: the form comes back with an error, the PDF is kept
    page.get_by_role("button", name="Soumettre la demande").click()
    page.wait_for_selector("#kept-upload")
    expect(page.locator("#kept-upload")).to_contain_text("deliberation-2026.pdf")
    expect(page.locator("label[for=id_legal_basis_document]")).to_contain_text("Remplacer")
    expect(page.locator(".fr-input-group--error")).to_have_count(1)
    assert PendingUpload.objects.count() == 1
    screenshot(page, "journey_4_request_form_error_pdf_kept")
    page.fill("#id_project_description", "Instruction des aides.")
    page.get_by_role("button", name="Soumettre la demande").click()
    page.wait_for_selector("#request-state[data-state=submitted]")
    renewal = AccessRequest.objects.get(kind="renewal")
    assert renewal.legal_basis_document.read() == PDF
    screenshot(page, "journey_5_request_submitted_with_pdf")
