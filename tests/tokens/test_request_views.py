"""Integrator pages and instructor admin of access requests."""

import re
import uuid

import pytest
from dateutil.relativedelta import relativedelta
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from notifications.models import Reminder
from notifications.sweep import reminders_sweep
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token
from tests.tokens.test_requests import contacts, full_data, new_request, submitted_request
from tokens import selectors, services
from tokens.models import AccessRequest, Token, TokenEvent

PASSWORD = "correct horse battery staple"


@pytest.fixture
def instructor(db):
    user = UserFactory(email="instructrice@tokenmgr.example", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="instruct_accessrequest"))
    return user


@pytest.fixture
def member(db):
    user = UserFactory(email="agent@mairie.example")
    client = ClientFactory(name="Mairie de Test")
    ClientMembershipFactory(client=client, user=user)
    return user


@pytest.fixture
def member_client(member):
    return member.clients.get()


def form_payload(action="submit", **over):
    data = {
        "action": action,
        "label": "Aides",
        "privileges": ["entreprises"],
        "project_description": "Instruction des aides.",
        "legal_basis_nature": "loi",
        "legal_basis_text": "Article L. 1",
        "legal_basis_url": "https://www.legifrance.gouv.fr/x",
        "expected_volume": "10",
        **{f"{r}_{k}": v for r, c in contacts("web").items() for k, v in c.items()},
    }
    data.update(over)
    return data


# ------------------------------------------------------------------------------
# Renewal (api_gouv route)
# ------------------------------------------------------------------------------


def test_renewal_form_is_prefilled_from_the_last_validated_request(client, member, member_client, instructor):
    first = submitted_request(client=member_client, applicant=member)
    token = services.access_request_validate(access_request=first, by=instructor)
    client.force_login(member)
    response = client.get(reverse("token_renew", args=[token.public_id]))
    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["project_description"] == "Instruction des demandes d'aides."
    assert form.initial["legal_basis_text"] == "Article L. 114-8 du CRPA"
    assert form.initial["technical_email"] == "technical.x@example.org"
    assert form.initial["privileges"] == ["entreprises", "etablissements"]
    html = response.content.decode()
    assert "mettez à jour les contacts" in html
    assert 'value="technical.x@example.org"' in html
    assert re.search(r'value="entreprises"[^>]*checked', html)
    # submitting creates a renewal linked to the token and to the request it was pre-filled from
    payload = form_payload(privileges=["entreprises", "etablissements"])
    response = client.post(reverse("token_renew", args=[token.public_id]), payload)
    ar = AccessRequest.objects.get(kind="renewal")
    assert response.status_code == 302 and response.url == reverse("request_detail", args=[ar.public_id])
    assert (ar.state, ar.token, ar.prefilled_from, ar.applicant) == ("submitted", token, first, member)
    # a second visit shows the open request instead of starting another one
    response = client.get(reverse("token_renew", args=[token.public_id]))
    assert response.status_code == 200 and response.context.get("form") is None
    assert reverse("request_detail", args=[ar.public_id]) in response.content.decode()


def test_form_errors_are_clear_and_in_french(client, member, member_client):
    token = issue_token(client=member_client).token
    client.force_login(member)
    response = client.post(
        reverse("token_renew", args=[token.public_id]),
        form_payload(
            project_description="", legal_basis_url="pas une url", technical_email="x@", expected_volume="0"
        ),
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["project_description"] == ["Décrivez votre projet."]
    assert errors["legal_basis_url"] == ["Saisissez une URL valide."]
    assert errors["technical_email"] == ["Adresse e-mail invalide (exemple : prenom.nom@mairie.fr)."]
    assert "supérieure ou égale à 1" in errors["expected_volume"][0]
    assert "Le formulaire contient des erreurs" in response.content.decode()
    assert not AccessRequest.objects.exists()


def test_draft_then_edit_and_submit(client, member, member_client):
    client.force_login(member)
    response = client.post(reverse("request_new"), {"action": "draft", "project_description": "Brouillon"})
    ar = AccessRequest.objects.get()
    assert response.status_code == 302 and ar.state == "draft" and ar.kind == "new"
    response = client.post(reverse("request_edit", args=[ar.public_id]), form_payload())
    ar.refresh_from_db()
    assert ar.state == "submitted" and ar.project_description == "Instruction des aides."


def test_respond_to_a_change_request_and_resubmit(client, member, member_client, instructor):
    ar = submitted_request(client=member_client, applicant=member)
    services.access_request_request_changes(access_request=ar, by=instructor, reason="Joignez le texte.")
    client.force_login(member)
    page = client.get(reverse("request_detail", args=[ar.public_id])).content.decode()
    assert "Joignez le texte." in page and "Modifier et soumettre à nouveau" in page
    client.post(reverse("request_message", args=[ar.public_id]), {"body": "C'est fait."})
    response = client.post(
        reverse("request_edit", args=[ar.public_id]), form_payload(legal_basis_text="Art. 2")
    )
    assert response.status_code == 302
    ar.refresh_from_db()
    assert ar.state == "submitted" and ar.legal_basis_text == "Art. 2"
    assert ar.messages.get().body == "C'est fait."
    page = client.get(reverse("request_detail", args=[ar.public_id])).content.decode()
    assert "C&#x27;est fait." in page


def test_submitted_request_cannot_be_edited_or_abandoned(client, member, member_client):
    ar = submitted_request(client=member_client, applicant=member)
    client.force_login(member)
    response = client.get(reverse("request_edit", args=[ar.public_id]), follow=True)
    assert "plus modifiable" in response.content.decode()
    response = client.post(reverse("request_abandon", args=[ar.public_id]), follow=True)
    assert "Impossible d&#x27;abandonner" in response.content.decode()
    ar.refresh_from_db()
    assert ar.state == "submitted"


def test_pdf_upload_and_download(client, member, member_client, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = str(tmp_path)
    client.force_login(member)
    pdf = SimpleUploadedFile("cadre.pdf", b"%PDF-1.4\n%fake\n", content_type="application/pdf")
    payload = form_payload(legal_basis_url="", legal_basis_document=pdf)
    response = client.post(reverse("request_new"), payload)
    assert response.status_code == 302
    ar = AccessRequest.objects.get()
    assert ar.state == "submitted" and ar.legal_basis_document.name.endswith(".pdf")
    response = client.get(reverse("request_document", args=[ar.public_id]))
    assert response.status_code == 200 and b"".join(response.streaming_content).startswith(b"%PDF-")
    bad = SimpleUploadedFile("cadre.pdf", b"MZ not a pdf", content_type="application/pdf")
    response = client.post(reverse("request_new"), form_payload(legal_basis_url="", legal_basis_document=bad))
    assert response.status_code == 200
    assert "pas un PDF valide" in str(response.context["form"].errors["legal_basis_document"])


# ------------------------------------------------------------------------------
# Pick-up
# ------------------------------------------------------------------------------


def test_pickup_reveals_the_secret_once(client, member, member_client, instructor):
    ar = submitted_request(client=member_client, applicant=member)
    token = services.access_request_validate(access_request=ar, by=instructor)
    client.force_login(member)
    page = client.get(reverse("token_pickup", args=[token.public_id])).content.decode()
    assert "Afficher le secret" in page
    response = client.post(reverse("token_reveal", args=[token.public_id]))
    assert response.status_code == 200 and response["Cache-Control"].startswith("no-store")
    secret = response.context["secret"]
    assert secret in response.content.decode() and "copy-secret" in response.content.decode()
    token.refresh_from_db()
    assert token.secret_prefix == secret[:12]
    page = client.get(reverse("token_pickup", args=[token.public_id])).content.decode()
    assert secret not in page and f"{token.secret_prefix}…" in page and "Afficher le secret" not in page
    response = client.post(reverse("token_reveal", args=[token.public_id]), follow=True)
    assert secret not in response.content.decode() and "déjà été récupéré" in response.content.decode()
    # regeneration needs a confirmation, then shows a new secret once
    client.post(reverse("token_regenerate", args=[token.public_id]), {})
    assert not token.events.filter(kind=TokenEvent.Kind.REGENERATED).exists()
    response = client.post(reverse("token_regenerate", args=[token.public_id]), {"confirm": "on"})
    assert response.context["secret"] != secret
    assert token.events.filter(kind=TokenEvent.Kind.REVEALED).count() == 1
    assert token.events.filter(kind=TokenEvent.Kind.REGENERATED).count() == 1


# ------------------------------------------------------------------------------
# Authorization: another client's objects are 404 on every view, guessed ids too
# ------------------------------------------------------------------------------


def test_every_view_refuses_another_clients_objects(client, member, member_client, instructor):
    other_client = ClientFactory()
    other_user = UserFactory()
    ClientMembershipFactory(client=other_client, user=other_user)
    other_token = issue_token(client=other_client, origin="api_gouv").token
    legacy = issue_token(client=other_client, origin="demarches_simplifiees").token
    other_request = submitted_request(client=other_client, applicant=other_user)
    services.access_request_request_changes(access_request=other_request, by=instructor, reason="x")
    client.force_login(member)
    token_views = ["token_renew", "token_extend", "token_pickup", "token_reveal", "token_regenerate"]
    request_views = [
        "request_detail",
        "request_edit",
        "request_abandon",
        "request_message",
        "request_document",
    ]
    for name in token_views:
        for target in (other_token.public_id, uuid.uuid4()):
            url = reverse(name, args=[target])
            assert client.get(url).status_code in (404, 405), url
            assert client.post(url, {"confirm": "on", "body": "x", **form_payload()}).status_code == 404, url
    for target in (legacy.public_id, uuid.uuid4()):
        assert client.get(reverse("token_legacy_renew", args=[target])).status_code == 404
        assert client.post(reverse("token_legacy_renew", args=[target]), form_payload()).status_code == 404
    for name in request_views:
        for target in (other_request.public_id, uuid.uuid4()):
            url = reverse(name, args=[target])
            assert client.get(url).status_code in (404, 405), url
            assert client.post(url, {"body": "x", **form_payload()}).status_code == 404, url
    # a member's own token still answers; and nothing of the other client changed
    assert client.get(reverse("request_list")).status_code == 200
    other_request.refresh_from_db()
    other_token.refresh_from_db()
    assert other_request.state == "changes_requested" and not other_request.messages.exists()
    assert other_token.events.filter(kind__in=["revealed", "regenerated"]).count() == 0
    assert AccessRequest.objects.count() == 1
    assert other_client.name not in client.get(reverse("request_list")).content.decode()


def test_anonymous_users_are_sent_to_the_login_page(client, member_client):
    token = issue_token(client=member_client).token
    response = client.get(reverse("token_renew", args=[token.public_id]))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


# ------------------------------------------------------------------------------
# Legacy route (demarches_simplifiees): account creation, NEW request, supersession
# ------------------------------------------------------------------------------


def test_legacy_path_end_to_end(client, instructor, django_capture_on_commit_callbacks, celery_eager):
    legacy_client = ClientFactory(name="Commune historique")
    contact = ContactFactory(client=legacy_client, email="Secretariat@Commune.example", role="requester")
    seventeen_months_ago = timezone.now() - relativedelta(months=17)  # expires within the reminder window
    legacy = issue_token(
        client=legacy_client,
        contacts=[contact],
        origin="demarches_simplifiees",
        issued_at=seventeen_months_ago,
    ).token
    control = issue_token(origin="demarches_simplifiees", issued_at=seventeen_months_ago).token
    legacy_url = reverse("token_legacy_renew", args=[legacy.public_id])
    # 1. arriving without a magic link: explanation of the change of platform, sign-up with email verification
    landing = client.get(legacy_url).content.decode()
    assert "demarches-simplifiees.fr" in landing and reverse("signup") in landing
    with django_capture_on_commit_callbacks(execute=True):  # the verification email is sent by a task
        response = client.post(
            reverse("signup"), {"email": "secretariat@commune.example", "next": legacy_url}
        )
    assert response.status_code == 200
    (verify,) = mail.outbox
    link = re.search(r"http://\S+/inscription/confirmer/\S+/", verify.body).group(0)
    confirm_path = link.split("8000", 1)[-1] if "8000" in link else link
    assert client.get(confirm_path.replace("/confirmer/", "/confirmer/x")).status_code == 400
    response = client.post(
        confirm_path,
        {"first_name": "Sam", "last_name": "Secrétaire", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302 and response.url == legacy_url
    user = get_user_model().objects.get(email="secretariat@commune.example")
    assert user.check_password(PASSWORD)
    assert legacy_client.members.filter(pk=user.pk).exists()  # the verified email is a contact of the token
    # 2. a NEW request with the banner, nothing pre-filled from the old platform
    page = client.get(legacy_url)
    form = page.context["form"]
    html = page.content.decode()
    assert 'id="legacy-banner"' in html and "n'est plus utilisée" in html.replace("&#x27;", "'")
    assert not form.initial.get("privileges") and not form.initial.get("project_description")
    assert not form.initial.get("legal_basis_text") and not form.initial.get("technical_email")
    response = client.post(legacy_url, form_payload(privileges=["entreprises", "associations"]))
    ar = AccessRequest.objects.get()
    assert (ar.kind, ar.state, ar.token, ar.prefilled_from) == ("new", "submitted", legacy, None)
    # 3. validation: the new token supersedes the legacy one, whose reminders stop
    with django_capture_on_commit_callbacks(execute=True):
        new = services.access_request_validate(access_request=ar, by=instructor)
    legacy.refresh_from_db()
    assert new.origin == "api_gouv" and legacy.renewed_by == new
    assert legacy.is_usable()  # it keeps working until its own expiry
    assert not Token.objects.active().filter(pk=legacy.pk).exists()
    assert Token.objects.active().filter(pk=new.pk).exists()
    reminders_sweep()
    assert Reminder.objects.filter(token=control).exists()  # the sweep does send for a live legacy token
    assert not Reminder.objects.filter(token=legacy).exists()


def test_legacy_magic_link_user_completes_the_account_first(client, instructor, recent_auth):
    legacy_client = ClientFactory()
    user = get_user_model().objects.create_user(email="it@commune.example")
    user.set_unusable_password()
    user.save()
    ClientMembershipFactory(client=legacy_client, user=user)
    legacy = issue_token(client=legacy_client, origin="demarches_simplifiees").token
    url = reverse("token_legacy_renew", args=[legacy.public_id])
    client.force_login(user, backend="sesame.backends.ModelBackend")  # as a reminder's link does
    assert client.get(url)["Location"].startswith(reverse("reauth"))  # a first password needs a fresh proof
    recent_auth(client)
    page = client.get(url)
    assert "tokens/account_form.html" in [t.name for t in page.templates]
    response = client.post(
        url,
        {"step": "account", "first_name": "I", "last_name": "T", "password1": PASSWORD, "password2": "autre"},
    )
    assert response.context["form"].errors["password2"] == ["Les deux mots de passe ne correspondent pas."]
    response = client.post(
        url,
        {
            "step": "account",
            "first_name": "I",
            "last_name": "T",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.has_usable_password()
    assert "tokens/request_form.html" in [t.name for t in client.get(url).templates]


def test_routes_redirect_to_each_other_by_origin(client, member, member_client):
    client.force_login(member)
    api_gouv = issue_token(client=member_client, origin="api_gouv").token
    legacy = issue_token(client=member_client, origin="demarches_simplifiees").token
    assert client.get(reverse("token_legacy_renew", args=[api_gouv.public_id])).url == reverse(
        "token_renew", args=[api_gouv.public_id]
    )
    assert client.get(reverse("token_renew", args=[legacy.public_id])).url == reverse(
        "token_legacy_renew", args=[legacy.public_id]
    )


# ------------------------------------------------------------------------------
# Instructor admin
# ------------------------------------------------------------------------------


@pytest.fixture
def reader(db):
    user = UserFactory(email="lecteur@tokenmgr.example", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_accessrequest"))
    return user


def test_admin_queue_and_diff(client, member, member_client, instructor):
    first = submitted_request(client=member_client, applicant=member)
    token = services.access_request_validate(access_request=first, by=instructor)
    renewal = submitted_request(
        client=member_client,
        applicant=member,
        kind="renewal",
        token=token,
        prefilled_from=first,
        data=full_data(privileges=selectors.privileges_resolve(codes=["entreprises", "associations"])),
    )
    client.force_login(instructor)
    changelist = reverse("admin:tokens_accessrequest_changelist")
    page = client.get(changelist, {"state__exact": "submitted", "kind__exact": "renewal"})
    assert page.status_code == 200 and page.context["cl"].result_count == 1
    page = client.get(reverse("admin:tokens_accessrequest_change", args=[renewal.pk])).content.decode()
    # Privileges by their labels, the code beside in small monospace (never the bare code).
    assert 'data-diff="added">+ <span class="tkm-privilege">' in page and "<code>associations</code>" in page
    assert (
        'data-diff="removed">− <span class="tkm-privilege">' in page and "<code>etablissements</code>" in page
    )
    assert 'class="ar-added"' in page and 'class="ar-removed"' in page
    assert 'data-action="validate"' in page and 'data-action="refuse"' in page
    assert "Historique" in page


def test_admin_actions(client, member, member_client, instructor, django_capture_on_commit_callbacks):
    ar = submitted_request(client=member_client, applicant=member)
    client.force_login(instructor)
    refuse = reverse("admin:tokens_accessrequest_action", args=[ar.pk, "refuse"])
    response = client.post(refuse, {"reason": ""})
    assert response.status_code == 200 and "Un motif est obligatoire." in response.content.decode()
    ar.refresh_from_db()
    assert ar.state == "submitted"
    changes = reverse("admin:tokens_accessrequest_action", args=[ar.pk, "request_changes"])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(changes, {"reason": "Précisez."}).status_code == 302
    ar.refresh_from_db()
    assert ar.state == "changes_requested" and mail.outbox[-1].to == [member.email]
    # a decision on a request no longer submitted is refused with a clear message
    validate = reverse("admin:tokens_accessrequest_action", args=[ar.pk, "validate"])
    response = client.post(validate, {})
    assert "Impossible de valider" in response.content.decode(), response.content.decode()[-3000:]
    services.access_request_submit(access_request=ar, by=member)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            message_url := reverse("admin:tokens_accessrequest_message", args=[ar.pk]), {"body": "Bonjour"}
        )
    assert response.status_code == 302 and mail.outbox[-1].to == [member.email]
    assert client.post(validate, {}).status_code == 302
    ar.refresh_from_db()
    assert ar.state == "validated" and ar.issued_token.pickup_pending_since is not None
    assert message_url


def test_other_staff_read_only(client, member, member_client, reader):
    ar = submitted_request(client=member_client, applicant=member)
    client.force_login(reader)
    page = client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Lecture seule" in html and 'data-action="validate"' not in html
    for action in ("validate", "refuse", "request_changes"):
        url = reverse("admin:tokens_accessrequest_action", args=[ar.pk, action])
        assert client.post(url, {"reason": "x"}).status_code == 403
    assert (
        client.post(reverse("admin:tokens_accessrequest_message", args=[ar.pk]), {"body": "x"}).status_code
        == 403
    )
    ar.refresh_from_db()
    assert ar.state == "submitted"
    # staff without any permission on requests cannot even read them
    nobody = UserFactory(is_staff=True)
    client.force_login(nobody)
    assert client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk])).status_code == 403


def test_new_request_without_organisation(client, db):
    user = UserFactory()
    client.force_login(user)
    assert "aucune organisation" in client.get(reverse("request_new")).content.decode()
    assert new_request  # imported helper used by other tests
