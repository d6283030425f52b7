"""Words on the request pages and in the admin, dates by locale, error pages, the instructors' queue."""

import datetime as dt
import re

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory, issue_token
from tests.tokens.test_requests import full_data
from tokens import services
from tokens.request_queue import queue_summary

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
SUBMITTED_AT = dt.datetime(2026, 3, 15, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def request_with_pdf(db, settings, tmp_path):
    """A renewal submitted on 15 March 2026 by an account that is not the requester named in the form."""
    settings.MEDIA_ROOT = str(tmp_path)
    applicant = UserFactory(email="clic@mairie.example")
    client = ClientFactory(name="Mairie de Mots")
    ClientMembershipFactory(client=client, user=applicant)
    token = issue_token(client=client, label="Portail").token
    with time_machine.travel(SUBMITTED_AT, tick=False):
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
    return applicant, ar


def english(client):
    client.cookies["django_language"] = "en"
    return client


# ------------------------------------------------------------------------------------------- portal request page
def test_request_page_names_contact_roles_in_words(client, request_with_pdf):
    applicant, ar = request_with_pdf
    client.force_login(applicant)
    html = client.get(reverse("request_detail", args=[ar.public_id])).content.decode()
    for code in ("requester", "technical", "business"):
        assert f"{code} :" not in html and f"{code}\xa0:" not in html
    assert "Demandeur\xa0: Requester x" in html
    assert "Contact technique\xa0: Technical x" in html
    # the document by its file name, never its storage path
    assert 'id="request-document"' in html and ">cadre-juridique.pdf</a>" in html
    assert "access_requests/" not in html
    # French dates: day first
    assert "15/03/2026" in html


def test_request_page_in_english_has_no_french_colon_spacing_and_english_dates(client, request_with_pdf):
    applicant, ar = request_with_pdf
    client.force_login(applicant)
    html = english(client).get(reverse("request_detail", args=[ar.public_id])).content.decode()
    assert '<html lang="en"' in html
    main = html[html.index("<main") : html.index("</main>")]
    assert not re.search(r"\S(\xa0|&nbsp;| ):(\s|<)", main), re.findall(r".{30}(?:\xa0| ):\s.{10}", main)
    assert "03/15/2026" in main and "15/03/2026" not in main


# ------------------------------------------------------------------------------------------------- admin words
def test_admin_request_page_speaks_words(admin_client, request_with_pdf):
    applicant, ar = request_with_pdf
    html = admin_client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk])).content.decode()
    assert "Decided by" not in html and "Décidée par" in html
    assert "Déposée par" in html
    # states by their labels in the history, never their codes
    assert "(brouillon → soumise)" in html and "draft → submitted" not in html
    # the legal nature by its label in the diff table and the fieldset
    diff = html[html.index('id="ar-diff"') : html.index('id="ar-history"')]
    assert "délibération" in diff and ">deliberation<" not in diff
    # the PDF: its file name and a download link, never the storage path
    assert "access_requests/" not in html
    document = reverse("admin:tokens_accessrequest_document", args=[ar.pk])
    assert f'cadre-juridique.pdf — <a href="{document}" download="cadre-juridique.pdf">' in html
    assert admin_client.get(document)["Content-Type"] == "application/pdf"
    # the history button stands before the page's sections, not in the middle of the diff table
    assert html.index('id="ar-object-tools"') < html.index('id="ar-diff"')
    assert html.count('class="object-tools') == 1
    # the message box has a label
    assert '<label for="id_body">' in html


def test_admin_request_dates_follow_the_locale(admin_client, request_with_pdf):
    applicant, ar = request_with_pdf
    url = reverse("admin:tokens_accessrequest_change", args=[ar.pk])
    assert "15/03/2026" in admin_client.get(url).content.decode()
    html = english(admin_client).get(url).content.decode()
    history = html[html.index('id="ar-history"') :]
    assert "03/15/2026" in history and "15/03/2026" not in history


def test_queue_demandeur_column_is_the_requester_named_in_the_form(admin_client, request_with_pdf):
    applicant, ar = request_with_pdf
    response = admin_client.get(reverse("admin:tokens_accessrequest_changelist"))
    html = response.content.decode()
    row = html[html.index('id="result_list"') :]
    assert "Requester x &lt;requester.x@example.org&gt;" in row
    assert applicant.email not in row
    found = admin_client.get(reverse("admin:tokens_accessrequest_changelist") + "?q=requester.x@example.org")
    assert found.context["cl"].result_count == 1


# ------------------------------------------------------------------------------------------ instructors' queue
def test_admin_index_shows_waiting_requests_and_the_oldest_age(admin_client, request_with_pdf):
    applicant, first = request_with_pdf
    with time_machine.travel(SUBMITTED_AT + dt.timedelta(days=2), tick=False):
        second = services.access_request_create(
            client=first.client, kind="new", applicant=applicant, data=full_data()
        )
        services.access_request_submit(access_request=second, by=applicant)
    services.access_request_create(client=first.client, kind="new", applicant=applicant, data=full_data())
    with time_machine.travel(SUBMITTED_AT + dt.timedelta(days=5, hours=1), tick=False):
        html = admin_client.get(reverse("admin:index")).content.decode()
    block = html[html.index('id="request-queue"') :]
    assert "2 demandes soumises attendent une décision." in block
    assert "depuis 5\xa0jours" in block
    assert "?state__exact=submitted" in block
    assert html.index('id="request-queue"') < html.index('id="content-main"')


def test_queue_summary_is_one_query(db, request_with_pdf):
    with CaptureQueriesContext(connection) as queries:
        summary = queue_summary(now=SUBMITTED_AT + dt.timedelta(days=3))
    assert len(queries) == 1
    assert summary.waiting == 1 and summary.oldest_days == 3


def test_admin_index_when_nothing_waits_and_for_staff_who_cannot_see_requests(client, admin_client, db):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Aucune demande n'attend de décision." in html
    staff = UserFactory(email="staff@tokenmgr.example", is_staff=True)
    client.force_login(staff)
    assert 'id="request-queue"' not in client.get(reverse("admin:index")).content.decode()


# ------------------------------------------------------------------------------------------------- error pages
def test_method_not_allowed_is_a_page_in_the_readers_language(client, db):
    response = client.get(reverse("logout"))
    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    html = response.content.decode()
    assert '<html lang="fr"' in html and "Erreur 405" in html and "Method Not Allowed" not in html
    html = english(client).get(reverse("logout")).content.decode()
    assert '<html lang="en"' in html


def test_api_405_stays_json(client, db):
    response = client.post("/api/watchdoge/dashboard/current_status")
    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/json")


def test_not_found_page_is_french_dsfr(client, db):
    response = client.get("/nulle-part/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page non trouvée" in html and "Not Found" not in html and "fr-container" in html
