"""Admin and request screens after the words/queue changes, in Chromium: layout checks, axe-core, screenshots."""

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from notifications import pending
from notifications.models import DeadlineAlert
from tests.browser.a11y import assert_accessible
from tests.browser.conftest import save_screenshot
from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory, issue_token
from tests.tokens.test_requests import full_data
from tokens import services, validity
from tokens.models import AccessRequest, Token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def boxes_overlap(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.fixture
def renewal(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    applicant = UserFactory(email="clic@mairie.example")
    instructor = UserFactory(email="instructrice@tokenmgr.example", is_staff=True, is_superuser=True)
    client = ClientFactory(name="Mairie de Mots")
    ClientMembershipFactory(client=client, user=applicant)
    token = issue_token(client=client, label="Portail").token
    ar = services.access_request_create(
        client=client,
        kind="renewal",
        applicant=applicant,
        token=token,
        data=full_data(
            legal_basis_nature="deliberation",
            legal_basis_document=SimpleUploadedFile("cadre-juridique.pdf", PDF, "application/pdf"),
        ),
    )
    services.access_request_submit(access_request=ar, by=applicant)
    AccessRequest.objects.filter(pk=ar.pk).update(submitted_at=timezone.now() - dt.timedelta(days=4))
    return applicant, instructor, ar


def test_admin_queue_history_button_and_words(new_context, live_server, renewal):
    applicant, instructor, ar = renewal
    base = live_server.url

    admin = new_context().new_page()
    admin.goto(base + reverse("admin:login"))
    admin.fill("#id_username", instructor.email)
    admin.fill("#id_password", PASSWORD)
    admin.locator("#login-form input[type=submit]").click()
    admin.wait_for_selector("#request-queue")
    assert "1 demande soumise attend une décision." in admin.inner_text("#request-queue")
    assert "4\xa0jours" in admin.inner_text("#request-queue-oldest")
    assert_accessible(admin)
    save_screenshot(admin, "admin_index_queue")

    admin.click("#request-queue-count a")
    admin.wait_for_selector("#result_list")
    assert "Requester x <requester.x@example.org>" in admin.inner_text("#result_list")
    assert applicant.email not in admin.inner_text("#result_list")
    save_screenshot(admin, "admin_queue_requester")

    admin.goto(base + reverse("admin:tokens_accessrequest_change", args=[ar.pk]))
    history = admin.locator("#ar-object-tools a").first.bounding_box()
    table = admin.locator("#ar-diff table").bounding_box()
    assert history and table and not boxes_overlap(history, table), (history, table)
    diff = admin.inner_text("#ar-diff")
    assert "délibération" in diff and "cadre-juridique.pdf" in diff and "access_requests/" not in diff
    assert "(brouillon → soumise)" in admin.inner_text("#ar-history")
    assert_accessible(admin)
    save_screenshot(admin, "admin_request_change")

    # The applicant's page in English: role names in words, English punctuation and dates.
    portal = new_context().new_page()
    portal.goto(base + reverse("login"))
    portal.fill("#id_username", applicant.email)
    portal.fill("#id_password", PASSWORD)
    portal.click("form[action='/connexion/'] button[type=submit]")
    portal.click("header button[value=en]")
    portal.wait_for_load_state()
    portal.goto(base + reverse("request_detail", args=[ar.public_id]))
    assert portal.locator("html").get_attribute("lang") == "en"
    text = portal.inner_text("main")
    assert "requester :" not in text and "technical :" not in text and "\xa0:" not in text
    assert timezone.localtime(ar.events.first().at).strftime("%m/%d/%Y") in text
    assert_accessible(portal)
    save_screenshot(portal, "request_detail_en")


def test_admin_deadline_alert_lists_each_instructors_message(new_context, live_server, renewal, settings):
    applicant, instructor, ar = renewal
    settings.REMINDER_DAYS = [90, 60, 30, 15]
    UserFactory(email="second.instructeur@tokenmgr.example", is_staff=True, is_superuser=True)
    Token.objects.filter(pk=ar.token_id).update(
        expires_at=validity.start_of_day(validity.today() + dt.timedelta(days=10)) + dt.timedelta(hours=10)
    )
    assert pending.deadline_alerts_run() == 2
    alert = DeadlineAlert.objects.get()

    admin = new_context().new_page()
    admin.set_default_timeout(60_000)
    admin.goto(live_server.url + reverse("admin:login"))
    admin.fill("#id_username", instructor.email)
    admin.fill("#id_password", PASSWORD)
    admin.locator("#login-form input[type=submit]").click()
    admin.wait_for_selector("#request-queue")
    admin.goto(live_server.url + reverse("admin:notifications_deadlinealert_change", args=[alert.pk]))
    inline = admin.inner_text("#messages-group")
    assert "instructrice@tokenmgr.example" in inline and "second.instructeur@tokenmgr.example" in inline
    assert inline.count("envoyé") >= 2
    assert_accessible(admin)
    save_screenshot(admin, "admin_deadline_alert")
