"""Token pages without dead ends, an honest pre-fill, and a legal-basis PDF kept across a form's re-display."""

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token
from tests.tokens.test_request_views import form_payload
from tests.tokens.test_requests import full_data, new_request, privs, submitted_request
from tokens import prefill, request_actions, services, uploads, validity
from tokens.models import AccessRequest, PendingUpload

PDF = b"%PDF-1.4\n% legal basis\n"


@pytest.fixture
def instructor(db):
    user = UserFactory(email="instructrice@tokenmgr.example", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="instruct_accessrequest"))
    return user


@pytest.fixture
def member(db):
    user = UserFactory(email="agent@mairie.example")
    ClientMembershipFactory(client=ClientFactory(name="Mairie de Test"), user=user)
    return user


@pytest.fixture
def member_client(member):
    return member.clients.get()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


def expired_token(client, **kwargs):
    return issue_token(client=client, issued_at=timezone.now() - dt.timedelta(days=600), **kwargs).token


def pdf(name="deliberation-2026.pdf", content=PDF):
    return SimpleUploadedFile(name, content, content_type="application/pdf")


# ------------------------------------------------------------------------------
# Dead ends: expired, revoked and legacy tokens
# ------------------------------------------------------------------------------


def test_expired_token_page_offers_a_new_request_prefilled_with_client_and_privileges(
    client, member, member_client
):
    token = expired_token(member_client, privileges=("associations", "entreprises"))
    client.force_login(member)
    page = client.get(reverse("portal_token", args=[token.public_id])).content.decode()
    url = reverse("token_request_new", args=[token.public_id])
    assert "aucune action" not in page
    assert f'href="{url}"' in page and "Faire une nouvelle demande" in page
    response = client.get(url)
    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["privileges"] == ["associations", "entreprises"]
    assert form.initial["requester_email"] == member.email
    html = response.content.decode()
    assert member_client.name in html and "données du jeton" in html
    response = client.post(url, form_payload(privileges=["associations", "entreprises"]))
    new = AccessRequest.objects.get()
    assert response.status_code == 302 and response.url == reverse("request_detail", args=[new.public_id])
    assert (new.kind, new.client, new.token, new.state) == ("new", member_client, token, "submitted")
    # the expired token's page now shows that request, and the route does not start a second one
    page = client.get(reverse("portal_token", args=[token.public_id])).content.decode()
    assert reverse("request_detail", args=[new.public_id]) in page and 'id="new-request-link"' not in page
    again = client.get(url)
    assert again.context.get("form") is None and 'id="pending-request"' in again.content.decode()
    client.post(url, form_payload())
    assert AccessRequest.objects.count() == 1


def test_expired_legacy_token_new_request_takes_nothing_from_the_old_platform(client, member, member_client):
    token = expired_token(member_client, origin="demarches_simplifiees")
    client.force_login(member)
    page = client.get(reverse("portal_token", args=[token.public_id])).content.decode()
    assert "aucune action" not in page and reverse("token_request_new", args=[token.public_id]) in page
    response = client.get(reverse("token_request_new", args=[token.public_id]))
    assert "privileges" not in response.context["form"].initial
    assert "Rien n'est repris de l'ancienne plateforme" in response.content.decode()


def test_active_legacy_token_page_offers_a_new_request(client, member, member_client):
    token = issue_token(client=member_client, origin="demarches_simplifiees").token
    client.force_login(member)
    for name in ("portal_token", "token_pickup"):
        page = client.get(reverse(name, args=[token.public_id])).content.decode()
        assert "Faire une nouvelle demande" in page
        assert reverse("token_legacy_renew", args=[token.public_id]) in page


def test_revoked_token_new_request_is_not_linked_to_it(client, member, member_client):
    token = issue_token(client=member_client).token
    services.token_revoke(token=token, by=None, reason="Secret publié")
    client.force_login(member)
    assert (
        "Faire une nouvelle demande"
        in client.get(reverse("token_pickup", args=[token.public_id])).content.decode()
    )
    response = client.post(reverse("token_request_new", args=[token.public_id]), form_payload())
    new = AccessRequest.objects.get()
    assert response.status_code == 302 and (new.client, new.token) == (member_client, None)


def test_new_request_route_of_a_token_in_service_is_its_renewal(client, member, member_client):
    token = issue_token(client=member_client).token
    client.force_login(member)
    response = client.get(reverse("token_request_new", args=[token.public_id]))
    assert response.url == reverse("token_renew", args=[token.public_id])


def test_new_request_route_is_for_members_only(client, member):
    other = expired_token(None)
    client.force_login(member)
    assert client.get(reverse("token_request_new", args=[other.public_id])).status_code == 404


def test_renew_with_a_pending_extension_shows_it_and_never_starts_a_second_request(
    client, member, member_client
):
    token = issue_token(client=member_client).token
    extension = new_request(
        client=member_client,
        applicant=member,
        kind="extension",
        token=token,
        data=full_data(privileges=privs("associations")),
    )
    services.access_request_submit(access_request=extension, by=member)
    extension.refresh_from_db()
    client.force_login(member)
    detail = reverse("request_detail", args=[extension.public_id])
    page = client.get(reverse("portal_token", args=[token.public_id])).content.decode()
    assert detail in page and 'id="pending-request"' in page and "soumise" in page
    assert reverse("token_renew", args=[token.public_id]) not in page
    for name in ("token_renew", "token_extend"):
        response = client.get(reverse(name, args=[token.public_id]))
        html = response.content.decode()
        assert response.status_code == 200 and response.context.get("form") is None
        assert detail in html and "extension du périmètre" in html
        assert validity.local_date(extension.submitted_at).strftime("%Y") in html
        client.post(reverse(name, args=[token.public_id]), form_payload())
    assert AccessRequest.objects.count() == 1
    pickup = client.get(reverse("token_pickup", args=[token.public_id])).content.decode()
    assert detail in pickup and reverse("token_renew", args=[token.public_id]) not in pickup


def test_request_actions_rule(member_client, member):
    live = issue_token(client=member_client).token
    assert request_actions.token_request_action(token=live).action == "renew"
    legacy = issue_token(client=member_client, origin="demarches_simplifiees").token
    assert request_actions.token_request_action(token=legacy).action == "legacy"
    expired = expired_token(member_client)
    assert request_actions.token_request_action(token=expired).action == "new"
    open_request = new_request(client=member_client, applicant=member, kind="renewal", token=live)
    action = request_actions.token_request_action(token=live)
    assert (action.action, action.pending, action.pending_date) == (
        "pending",
        open_request,
        open_request.created_at,
    )


# ------------------------------------------------------------------------------
# The pre-fill says what it holds, and where it comes from
# ------------------------------------------------------------------------------


def test_prefill_source_of_a_token_issued_by_a_request(member_client, member, instructor):
    with time_machine.travel(dt.datetime(2026, 3, 10, 10, tzinfo=validity.local_tz()), tick=False):
        first = submitted_request(client=member_client, applicant=member)
        token = services.access_request_validate(access_request=first, by=instructor)
    source = prefill.renewal_prefill_source(token=token)
    assert source.request == first and source.date == dt.date(2026, 3, 10)
    assert {
        "project_description",
        "expected_volume",
        "legal_basis_text",
        "privileges",
        "technical_email",
    } <= set(source.fields)
    assert source.missing == []


def test_prefill_source_of_an_imported_token_is_the_token(member_client):
    contact = ContactFactory(
        client=member_client, role="technical", email="tech@commune.example", name="T. Ech"
    )
    token = issue_token(
        client=member_client,
        contacts=[contact],
        issued_at=dt.datetime(2025, 6, 1, 9, tzinfo=validity.local_tz()),
        origin="api_gouv",
    ).token
    source = prefill.renewal_prefill_source(token=token)
    assert source.request is None and source.date == dt.date(2025, 6, 1)
    assert source.fields == ["label", "privileges", "technical_name", "technical_email"]
    assert source.missing == [
        "project_description",
        "expected_volume",
        "legal_basis_nature",
        "legal_basis_text",
    ]
    legacy = issue_token(client=member_client, origin="demarches_simplifiees").token
    assert prefill.renewal_prefill_source(token=legacy).fields == []


def test_renewal_form_says_what_is_prefilled_and_from_where(client, member, member_client, instructor):
    imported = issue_token(client=member_client, origin="api_gouv").token
    client.force_login(member)
    html = client.get(reverse("token_renew", args=[imported.public_id])).content.decode()
    assert "d'origine" not in html
    assert "pré-rempli à partir du jeton" in html and "importé" in html
    assert "À compléter" in html and "la description du projet" in html and "le cadre juridique" in html
    first = submitted_request(client=member_client, applicant=member)
    token = services.access_request_validate(access_request=first, by=instructor)
    response = client.get(reverse("token_renew", args=[token.public_id]))
    html = response.content.decode()
    assert "à partir de votre demande d'origine" in html
    assert reverse("request_detail", args=[first.public_id]) in html
    assert 'id="prefill-missing"' not in html
    assert response.context["form"].initial["project_description"] == first.project_description


# ------------------------------------------------------------------------------
# A PDF kept across a re-display
# ------------------------------------------------------------------------------


def test_pdf_is_kept_across_an_error_and_lands_in_the_request(
    client, member, member_client, media, django_capture_on_commit_callbacks
):
    client.force_login(member)
    url = reverse("request_new")
    response = client.post(
        url, form_payload(legal_basis_url="", project_description="", legal_basis_document=pdf())
    )
    assert response.status_code == 200 and "project_description" in response.context["form"].errors
    html = response.content.decode()
    assert "deliberation-2026.pdf" in html and "Remplacer le document" in html
    kept = PendingUpload.objects.get()
    assert f'value="{kept.public_id}"' in html and kept.owner == member
    assert (media / kept.file.name).read_bytes() == PDF
    # fixed, sent again without attaching the file
    payload = form_payload(legal_basis_url="", **{uploads.FIELD: str(kept.public_id)})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, payload)
    assert response.status_code == 302
    ar = AccessRequest.objects.get()
    assert ar.state == "submitted" and ar.legal_basis_document.name.endswith(".pdf")
    assert ar.legal_basis_document.read() == PDF
    assert not PendingUpload.objects.exists() and not (media / kept.file.name).exists()


def test_a_new_upload_replaces_the_kept_one(client, member, member_client):
    client.force_login(member)
    url = reverse("request_new")
    client.post(url, form_payload(legal_basis_url="", expected_volume="", legal_basis_document=pdf("a.pdf")))
    first = PendingUpload.objects.get()
    response = client.post(
        url,
        form_payload(
            legal_basis_url="",
            expected_volume="",
            legal_basis_document=pdf("b.pdf", PDF + b"v2"),
            **{uploads.FIELD: str(first.public_id)},
        ),
    )
    assert "b.pdf" in response.content.decode()
    second = PendingUpload.objects.get()
    assert second.name == "b.pdf" and second.pk != first.pk
    client.post(url, form_payload(legal_basis_url="", **{uploads.FIELD: str(second.public_id)}))
    assert AccessRequest.objects.get().legal_basis_document.read() == PDF + b"v2"


def test_an_invalid_upload_is_not_kept(client, member, member_client, settings):
    settings.ACCESS_REQUEST_DOCUMENT_MAX_BYTES = 10
    client.force_login(member)
    response = client.post(
        reverse("request_new"), form_payload(project_description="", legal_basis_document=pdf())
    )
    assert "taille maximale" in str(response.context["form"].errors["legal_basis_document"])
    assert not PendingUpload.objects.exists()
    html = response.content.decode()
    assert "fr-upload-group" in html and "Taille maximale : 1 Mo. Format accepté : PDF." in html


def test_another_session_cannot_use_a_pending_upload(client, member, member_client):
    client.force_login(member)
    client.post(
        reverse("request_new"),
        form_payload(legal_basis_url="", label="", project_description="", legal_basis_document=pdf()),
    )
    kept = PendingUpload.objects.get()
    payload = form_payload(legal_basis_url="", **{uploads.FIELD: str(kept.public_id)})
    # the same person in another browser session
    other_session = HttpClient()
    other_session.force_login(member)
    response = other_session.post(reverse("request_new"), payload)
    assert response.status_code == 200
    assert "n&#x27;est plus disponible" in response.content.decode()
    # another member of the same organisation
    colleague = UserFactory(email="collegue@mairie.example")
    ClientMembershipFactory(client=member_client, user=colleague)
    third = HttpClient()
    third.force_login(colleague)
    session = third.session
    session[uploads.SESSION_KEY] = [str(kept.public_id)]  # even knowing the id in its own session
    session.save()
    response = third.post(reverse("request_new"), payload)
    assert response.status_code == 200 and "n&#x27;est plus disponible" in response.content.decode()
    assert not AccessRequest.objects.exists() and PendingUpload.objects.count() == 1


def test_pending_uploads_expire_and_are_purged(
    client, member, member_client, media, django_capture_on_commit_callbacks
):
    client.force_login(member)
    client.post(
        reverse("request_new"),
        form_payload(legal_basis_url="", project_description="", legal_basis_document=pdf()),
    )
    kept = PendingUpload.objects.get()
    later = timezone.now() + uploads.MAX_AGE + dt.timedelta(minutes=1)
    with time_machine.travel(later, tick=False):
        response = client.post(
            reverse("request_new"), form_payload(legal_basis_url="", **{uploads.FIELD: str(kept.public_id)})
        )
        assert "n&#x27;est plus disponible" in response.content.decode()
        from tokens.tasks import purge_pending_uploads

        with django_capture_on_commit_callbacks(execute=True):
            assert purge_pending_uploads() == 1
    assert not PendingUpload.objects.exists() and not (media / kept.file.name).exists()


def test_kept_pdf_on_the_renewal_and_edit_forms(client, member, member_client):
    token = issue_token(client=member_client).token
    client.force_login(member)
    url = reverse("token_renew", args=[token.public_id])
    response = client.post(
        url, form_payload(legal_basis_url="", requester_email="x@", legal_basis_document=pdf())
    )
    assert "deliberation-2026.pdf" in response.content.decode()
    kept = PendingUpload.objects.get()
    client.post(url, form_payload(legal_basis_url="", **{uploads.FIELD: str(kept.public_id)}))
    ar = AccessRequest.objects.get(kind="renewal")
    assert ar.legal_basis_document.read() == PDF and not PendingUpload.objects.exists()
