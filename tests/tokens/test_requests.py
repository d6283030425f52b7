"""Access-request workflow services: transitions, reasons, validation, pre-fill, diff, pick-up, emails."""

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token
from tokenmgr.errors import ApplicationError
from tokens import prefill as prefill_
from tokens import selectors, services, validity
from tokens.forms import AccessRequestForm
from tokens.models import AccessRequest, AccessRequestEvent, Contact, Privilege, Token, TokenEvent
from tokens.services import AccessRequestData, TransitionNotAllowed

PARIS = validity.local_tz()
NOW = dt.datetime(2026, 3, 10, 10, 0, tzinfo=PARIS)


def privs(*codes):
    return list(Privilege.objects.filter(code__in=codes))


def contacts(prefix="x"):
    return {
        role: {
            "name": f"{role.title()} {prefix}",
            "email": f"{role}.{prefix}@example.org",
            "phone": "01 02 03 04 05",
        }
        for role in AccessRequest.CONTACT_ROLES
    }


def full_data(**over) -> AccessRequestData:
    values = {
        "label": "Aides sociales",
        "privileges": privs("entreprises", "etablissements"),
        "project_description": "Instruction des demandes d'aides.",
        "legal_basis_nature": "loi",
        "legal_basis_text": "Article L. 114-8 du CRPA",
        "legal_basis_url": "https://www.legifrance.gouv.fr/codes/article_lc/LEGIARTI000031367444",
        "contacts": contacts(),
        "expected_volume": 20,
    }
    values.update(over)
    return AccessRequestData(**values)


@pytest.fixture
def instructor(db):
    user = UserFactory(email="instructrice@tokenmgr.example", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="instruct_accessrequest"))
    return user


@pytest.fixture
def applicant(db):
    return UserFactory(email="demandeur@mairie.example")


@pytest.fixture
def client_(applicant):
    client = ClientFactory()
    ClientMembershipFactory(client=client, user=applicant)
    return client


def new_request(*, client, applicant, kind="new", token=None, data=None, prefilled_from=None):
    return services.access_request_create(
        client=client,
        kind=kind,
        applicant=applicant,
        data=data or full_data(),
        token=token,
        prefilled_from=prefilled_from,
    )


def submitted_request(**kwargs):
    ar = new_request(**kwargs)
    return services.access_request_submit(access_request=ar, by=kwargs["applicant"])


def validated_request(*, instructor, **kwargs):
    ar = submitted_request(**kwargs)
    services.access_request_validate(access_request=ar, by=instructor)
    ar.refresh_from_db()
    return ar


# ------------------------------------------------------------------------------
# Transitions
# ------------------------------------------------------------------------------


def test_create_is_a_draft_with_audit(client_, applicant):
    ar = new_request(client=client_, applicant=applicant)
    assert ar.state == AccessRequest.State.DRAFT
    event = ar.events.get()
    assert (event.kind, event.actor) == (AccessRequestEvent.Kind.CREATED, applicant)
    assert ar.contacts["technical"]["email"] == "technical.x@example.org"


def test_submit_from_draft_emails_applicant_and_instructors(
    client_, applicant, instructor, django_capture_on_commit_callbacks
):
    ar = new_request(client=client_, applicant=applicant)
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_submit(access_request=ar, by=applicant)
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED and ar.submitted_at
    assert ar.events.filter(
        kind="submitted", from_state="draft", to_state="submitted", actor=applicant
    ).exists()
    to = {tuple(m.to) for m in mail.outbox}
    assert to == {(applicant.email,), (instructor.email,)}
    assert all(m.alternatives for m in mail.outbox)


def test_submit_incomplete_is_refused_with_the_missing_fields(client_, applicant):
    ar = new_request(
        client=client_, applicant=applicant, data=full_data(legal_basis_url="", expected_volume=None)
    )
    with pytest.raises(ApplicationError) as excinfo:
        services.access_request_submit(access_request=ar, by=applicant)
    assert "lien vers le texte" in excinfo.value.message and "volumétrie" in excinfo.value.message
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.DRAFT


@pytest.mark.parametrize("state", ["submitted", "validated", "refused", "abandoned"])
def test_submit_not_allowed_from(client_, applicant, state):
    ar = new_request(client=client_, applicant=applicant)
    AccessRequest.objects.filter(pk=ar.pk).update(state=state)
    with pytest.raises(TransitionNotAllowed, match="Impossible de soumettre"):
        services.access_request_submit(access_request=ar, by=applicant)


def test_request_changes_then_resubmit(client_, applicant, instructor, django_capture_on_commit_callbacks):
    ar = submitted_request(client=client_, applicant=applicant)
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_request_changes(access_request=ar, by=instructor, reason="Précisez le texte.")
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.CHANGES_REQUESTED
    assert ar.events.get(kind="changes_requested").reason == "Précisez le texte."
    assert mail.outbox[-1].to == [applicant.email] and "Précisez le texte." in mail.outbox[-1].body
    services.access_request_update(
        access_request=ar, by=applicant, data=full_data(legal_basis_text="Article L. 114-9 du CRPA")
    )
    assert ar.events.get(kind="updated").data["fields"] == ["legal_basis_text"]
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_submit(access_request=ar, by=applicant)
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED
    assert ar.events.filter(kind="submitted").last().data == {"resubmission": True}
    assert any("à nouveau" in m.subject for m in mail.outbox)


@pytest.mark.parametrize("action", ["request_changes", "refuse"])
def test_reason_is_required(client_, applicant, instructor, action):
    ar = submitted_request(client=client_, applicant=applicant)
    fn = getattr(services, f"access_request_{action}")
    with pytest.raises(ApplicationError, match="motif est obligatoire"):
        fn(access_request=ar, by=instructor, reason="   ")
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED


@pytest.mark.parametrize("action", ["request_changes", "refuse", "validate"])
def test_instructor_actions_need_the_permission(client_, applicant, action):
    ar = submitted_request(client=client_, applicant=applicant)
    staff = UserFactory(is_staff=True)
    kwargs = {} if action == "validate" else {"reason": "non"}
    with pytest.raises(ApplicationError, match="instructeurs"):
        getattr(services, f"access_request_{action}")(access_request=ar, by=staff, **kwargs)


@pytest.mark.parametrize("action", ["request_changes", "refuse", "validate"])
@pytest.mark.parametrize("state", ["draft", "changes_requested", "validated", "refused", "abandoned"])
def test_instructor_actions_only_on_submitted(client_, applicant, instructor, action, state):
    ar = new_request(client=client_, applicant=applicant)
    AccessRequest.objects.filter(pk=ar.pk).update(state=state)
    kwargs = {} if action == "validate" else {"reason": "motif"}
    with pytest.raises(TransitionNotAllowed):
        getattr(services, f"access_request_{action}")(access_request=ar, by=instructor, **kwargs)


def test_refused_renewal_never_touches_the_token(
    client_, applicant, instructor, django_capture_on_commit_callbacks
):
    token = issue_token(client=client_).token
    ar = submitted_request(client=client_, applicant=applicant, kind="renewal", token=token)
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_refuse(
            access_request=ar, by=instructor, reason="Cadre juridique insuffisant."
        )
    ar.refresh_from_db()
    token.refresh_from_db()
    assert ar.state == AccessRequest.State.REFUSED and ar.decided_by == instructor
    assert token.renewed_by is None and token.revoked_at is None
    assert Token.objects.active().filter(pk=token.pk).exists()
    assert mail.outbox[-1].to == [applicant.email]
    assert "Cadre juridique insuffisant." in mail.outbox[-1].body
    assert "reste valable" in mail.outbox[-1].body


def test_abandon(client_, applicant, django_capture_on_commit_callbacks):
    token = issue_token(client=client_).token
    ar = new_request(client=client_, applicant=applicant, kind="renewal", token=token)
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_abandon(access_request=ar, by=applicant)
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.ABANDONED
    assert ar.events.filter(kind="abandoned", actor=applicant).exists()
    token.refresh_from_db()
    assert token.renewed_by is None and Token.objects.active().filter(pk=token.pk).exists()
    assert "abandonnée" in mail.outbox[-1].subject
    # a new renewal may start once the previous one is closed
    new_request(client=client_, applicant=applicant, kind="renewal", token=token)


@pytest.mark.parametrize("state", ["submitted", "validated", "refused", "abandoned"])
def test_abandon_not_allowed_from(client_, applicant, state):
    ar = new_request(client=client_, applicant=applicant)
    AccessRequest.objects.filter(pk=ar.pk).update(state=state)
    with pytest.raises(TransitionNotAllowed, match="abandonner"):
        services.access_request_abandon(access_request=ar, by=applicant)


@pytest.mark.parametrize("state", ["submitted", "validated", "refused", "abandoned"])
def test_update_not_allowed_from(client_, applicant, state):
    ar = new_request(client=client_, applicant=applicant)
    AccessRequest.objects.filter(pk=ar.pk).update(state=state)
    with pytest.raises(TransitionNotAllowed, match="modifier"):
        services.access_request_update(access_request=ar, by=applicant, data=full_data())


def test_one_open_request_per_token(client_, applicant):
    token = issue_token(client=client_).token
    new_request(client=client_, applicant=applicant, kind="renewal", token=token)
    with pytest.raises(ApplicationError, match="déjà en cours"):
        new_request(client=client_, applicant=applicant, kind="extension", token=token, data=full_data())


def test_renewal_needs_a_token_of_the_same_client(client_, applicant):
    with pytest.raises(ApplicationError):
        new_request(client=client_, applicant=applicant, kind="renewal")
    other = issue_token().token
    with pytest.raises(ApplicationError, match="n'appartient pas"):
        new_request(client=client_, applicant=applicant, kind="renewal", token=other)


# ------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------


def test_validate_issues_a_successor_token(
    client_, applicant, instructor, django_capture_on_commit_callbacks
):
    with time_machine.travel(dt.datetime(2025, 1, 5, 9, 0, tzinfo=PARIS), tick=False):
        old = issue_token(client=client_, privileges=("entreprises",), origin="api_gouv").token
    with time_machine.travel(NOW, tick=False):
        ar = submitted_request(client=client_, applicant=applicant, kind="renewal", token=old)
        with django_capture_on_commit_callbacks(execute=True):
            new = services.access_request_validate(access_request=ar, by=instructor)
        ar.refresh_from_db()
        old.refresh_from_db()
        assert ar.state == AccessRequest.State.VALIDATED and ar.issued_token == new
        assert new.origin == "api_gouv"
        assert new.issued_at == NOW and new.expires_at == dt.datetime(2027, 9, 10, 10, 0, tzinfo=PARIS)
        assert sorted(p.code for p in new.privileges.all()) == ["entreprises", "etablissements"]
        assert {(c.role, c.email) for c in new.contacts.all()} == {
            (role, f"{role}.x@example.org") for role in AccessRequest.CONTACT_ROLES
        }
        assert new.pickup_pending_since == NOW
        # supersession: reminders stop for the old token, which keeps working until its own expiry
        assert old.renewed_by == new and old.revoked_at is None and old.is_usable()
        assert not Token.objects.active().filter(pk=old.pk).exists()
        assert Token.objects.active().filter(pk=new.pk).exists()
        assert old.events.filter(kind=TokenEvent.Kind.SUPERSEDED).exists()
        event = ar.events.get(kind="validated")
        assert event.actor == instructor and event.data["replaces"] == str(old.public_id)
    (message,) = [m for m in mail.outbox if "validée" in m.subject]
    assert {e.lower() for e in message.to} == {applicant.email} | {
        f"{r}.x@example.org" for r in AccessRequest.CONTACT_ROLES
    }
    assert f"/jetons/{new.public_id}/" in message.body
    assert "tkm_" not in message.body and "tkm_" not in message.alternatives[0][0]


def test_validate_can_revoke_the_old_token_with_a_reason(client_, applicant, instructor):
    old = issue_token(client=client_).token
    ar = submitted_request(client=client_, applicant=applicant, kind="renewal", token=old)
    with pytest.raises(ApplicationError, match="motif"):
        services.access_request_validate(
            access_request=ar, by=instructor, revoke_previous=True, revoke_reason=""
        )
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED
    services.access_request_validate(
        access_request=ar, by=instructor, revoke_previous=True, revoke_reason="Fuite du secret"
    )
    old.refresh_from_db()
    assert old.revoked_at is not None and old.revocation_reason == "Fuite du secret"
    assert not old.is_usable()


def test_contacts_are_updated_from_the_request(client_, applicant, instructor):
    old = issue_token(client=client_, contacts=0).token
    Contact.objects.create(
        client=client_, email="technical.x@example.org", role="technical", name="Ancien nom"
    )
    validated_request(instructor=instructor, client=client_, applicant=applicant, kind="renewal", token=old)
    assert Contact.objects.get(email="technical.x@example.org").name == "Technical x"


# ------------------------------------------------------------------------------
# Pre-fill and diff
# ------------------------------------------------------------------------------


def test_prefill_from_the_last_validated_request(client_, applicant, instructor):
    first = validated_request(instructor=instructor, client=client_, applicant=applicant)
    token = first.issued_token
    prefill = prefill_.token_prefill(token=token, kind="renewal")
    assert prefill.prefilled_from == first
    initial = prefill.initial
    assert initial["privileges"] == ["entreprises", "etablissements"]
    assert initial["project_description"] == "Instruction des demandes d'aides."
    assert initial["legal_basis_nature"] == "loi"
    assert initial["legal_basis_text"] == "Article L. 114-8 du CRPA"
    assert initial["legal_basis_url"].startswith("https://www.legifrance.gouv.fr/")
    assert initial["technical_email"] == "technical.x@example.org"
    assert initial["business_name"] == "Business x"
    assert initial["expected_volume"] == 20


def test_prefill_of_an_imported_token_uses_what_the_token_has(client_):
    contact = ContactFactory(
        client=client_, role="technical", email="tech@commune.example", name="T. Echnique"
    )
    token = issue_token(client=client_, privileges=("associations",), contacts=[contact]).token
    prefill = prefill_.token_prefill(token=token, kind="renewal")
    assert prefill.prefilled_from is None
    assert prefill.initial["privileges"] == ["associations"]
    assert prefill.initial["technical_email"] == "tech@commune.example"
    assert "project_description" not in prefill.initial and "legal_basis_text" not in prefill.initial


def test_prefill_of_an_extension_leaves_the_legal_basis_empty(client_, applicant, instructor):
    token = validated_request(instructor=instructor, client=client_, applicant=applicant).issued_token
    initial = prefill_.token_prefill(token=token, kind="extension").initial
    assert initial["project_description"]
    assert not {"legal_basis_nature", "legal_basis_text", "legal_basis_url"} & initial.keys()


def test_diff_against_the_prefilled_request(client_, applicant, instructor):
    first = validated_request(instructor=instructor, client=client_, applicant=applicant)
    changed_contacts = contacts()
    changed_contacts["technical"]["email"] = "nouveau.tech@example.org"
    ar = new_request(
        client=client_,
        applicant=applicant,
        kind="renewal",
        token=first.issued_token,
        prefilled_from=first,
        data=full_data(privileges=privs("entreprises", "associations"), contacts=changed_contacts),
    )
    diff = selectors.access_request_diff(access_request=ar)
    assert diff.baseline == "request"
    assert diff.privileges_added == ["associations"]
    assert diff.privileges_removed == ["etablissements"]
    assert diff.privileges_kept == ["entreprises"]
    assert [(r.field, r.before, r.after) for r in diff.changed_rows] == [
        ("technical_email", "technical.x@example.org", "nouveau.tech@example.org")
    ]


def test_diff_of_a_new_request_has_no_baseline(client_, applicant):
    diff = selectors.access_request_diff(access_request=new_request(client=client_, applicant=applicant))
    assert diff.baseline == "" and diff.privileges_added == ["entreprises", "etablissements"]
    assert diff.changed_rows == []


# ------------------------------------------------------------------------------
# Extension
# ------------------------------------------------------------------------------


def test_extension_adds_privileges_and_supersedes(client_, applicant, instructor):
    token = issue_token(client=client_, privileges=("entreprises",)).token
    form = AccessRequestForm(
        data={
            "privileges": ["attestations_fiscales_dgfip"],
            "project_description": "Marchés publics",
            "legal_basis_nature": "decret",
            "legal_basis_text": "Article R. 2143-7 du code de la commande publique",
            "legal_basis_url": "https://www.legifrance.gouv.fr/x",
            "expected_volume": "5",
            **{f"{r}_{k}": v for r, c in contacts().items() for k, v in c.items()},
        },
        kind="extension",
        submitting=True,
        base_privileges=list(token.privileges.all()),
    )
    assert form.is_valid(), form.errors
    ar = services.access_request_create(
        client=client_, kind="extension", applicant=applicant, data=form.to_data(), token=token
    )
    services.access_request_submit(access_request=ar, by=applicant)
    diff = selectors.access_request_diff(access_request=ar)
    assert diff.baseline == "token"
    assert diff.privileges_added == ["attestations_fiscales_dgfip"] and diff.privileges_removed == []
    new = services.access_request_validate(access_request=ar, by=instructor)
    assert sorted(p.code for p in new.privileges.all()) == ["attestations_fiscales_dgfip", "entreprises"]
    token.refresh_from_db()
    assert token.renewed_by == new and token.is_usable()


def test_extension_requires_an_added_privilege_and_a_legal_basis(client_):
    token = issue_token(client=client_, privileges=("entreprises",)).token
    form = AccessRequestForm(
        data={"privileges": [], "project_description": "x"},
        kind="extension",
        submitting=True,
        base_privileges=list(token.privileges.all()),
    )
    assert not form.is_valid()
    assert "Choisissez au moins une donnée à ajouter." in form.errors["privileges"]
    assert form.errors["legal_basis_text"] and form.errors["legal_basis_url"]
    # the token's own privileges are not offered again
    assert "entreprises" not in [p.code for p in form.fields["privileges"].queryset]


# ------------------------------------------------------------------------------
# Legal-basis document
# ------------------------------------------------------------------------------


def _form_with(upload):
    return AccessRequestForm(data={}, files={"legal_basis_document": upload})


def test_pdf_document_validation(db, settings):
    settings.ACCESS_REQUEST_DOCUMENT_MAX_BYTES = 1024
    ok = _form_with(SimpleUploadedFile("cadre.pdf", b"%PDF-1.7\n" + b"x" * 100, "application/pdf"))
    assert ok.is_valid(), ok.errors
    for upload, message in [
        (SimpleUploadedFile("cadre.docx", b"%PDF-1.7", "application/pdf"), "fichier PDF"),
        (SimpleUploadedFile("cadre.pdf", b"<html>nope</html>", "application/pdf"), "pas un PDF valide"),
        (SimpleUploadedFile("cadre.pdf", b"%PDF-" + b"x" * 2000, "application/pdf"), "taille maximale"),
    ]:
        form = _form_with(upload)
        assert not form.is_valid()
        assert message in str(form.errors["legal_basis_document"])


# ------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------


def test_messages_are_emailed_to_the_other_side(
    client_, applicant, instructor, django_capture_on_commit_callbacks
):
    ar = submitted_request(client=client_, applicant=applicant)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_message_post(
            access_request=ar, by=applicant, body="Une question", from_instructor=False
        )
    assert mail.outbox[-1].to == [instructor.email] and "Une question" in mail.outbox[-1].body
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_message_post(
            access_request=ar, by=instructor, body="Une réponse", from_instructor=True
        )
    assert mail.outbox[-1].to == [applicant.email] and "Une réponse" in mail.outbox[-1].body
    assert ar.messages.count() == 2 and ar.events.filter(kind="message").count() == 2
    with pytest.raises(ApplicationError):
        services.access_request_message_post(access_request=ar, by=applicant, body="x", from_instructor=True)
    with pytest.raises(ApplicationError, match="vide"):
        services.access_request_message_post(
            access_request=ar, by=applicant, body="  ", from_instructor=False
        )


# ------------------------------------------------------------------------------
# Pick-up: the secret is generated at reveal time and shown once
# ------------------------------------------------------------------------------


def test_reveal_once_then_regenerate(client_, applicant, instructor):
    token = validated_request(instructor=instructor, client=client_, applicant=applicant).issued_token
    now = dt.datetime.now(dt.UTC)
    assert selectors.token_by_secret(secret="tkm_guess") is None
    secret = services.token_secret_reveal(token=token, by=applicant)
    token.refresh_from_db()
    assert token.pickup_pending_since is None and secret.startswith(token.secret_prefix)
    assert selectors.token_check(secret=secret, now=now).outcome.value == "ok"
    assert token.events.filter(kind=TokenEvent.Kind.REVEALED, actor=applicant).count() == 1
    with pytest.raises(ApplicationError, match="déjà été récupéré"):
        services.token_secret_reveal(token=token, by=applicant)
    expires_at = token.expires_at
    regenerated = services.token_secret_regenerate(token=token, by=applicant, reason="perdu")
    token.refresh_from_db()
    assert regenerated != secret and token.expires_at == expires_at
    assert selectors.token_check(secret=secret, now=now).outcome.value == "invalid"
    assert selectors.token_check(secret=regenerated, now=now).outcome.value == "ok"
    event = token.events.get(kind=TokenEvent.Kind.REGENERATED)
    assert event.reason == "perdu" and event.actor == applicant


def test_regenerate_refused_before_pickup_and_on_revoked_tokens(client_, applicant, instructor):
    token = validated_request(instructor=instructor, client=client_, applicant=applicant).issued_token
    with pytest.raises(ApplicationError, match="pas encore été récupéré"):
        services.token_secret_regenerate(token=token, by=applicant)
    services.token_secret_reveal(token=token, by=applicant)
    services.token_revoke(token=token, by=instructor, reason="fin")
    with pytest.raises(ApplicationError, match="plus utilisable"):
        services.token_secret_regenerate(token=token, by=applicant)


def test_plain_text_parts_are_not_html_escaped(
    client_, applicant, instructor, django_capture_on_commit_callbacks
):
    client_.name = "L'Oréal & Fils <Est>"
    client_.save()
    ar = submitted_request(client=client_, applicant=applicant)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_refuse(access_request=ar, by=instructor, reason="Cadre « juridique » & base")
    (message,) = mail.outbox
    assert "L'Oréal & Fils <Est>" in message.subject and "L'Oréal & Fils <Est>" in message.body
    assert "Cadre « juridique » & base" in message.body and "&amp;" not in message.body
    html = message.alternatives[0][0]
    assert "L&#x27;Oréal &amp; Fils &lt;Est&gt;" in html


# ------------------------------------------------------------------------------
# Audit: old and new values of updates, the diff kept with the decision
# ------------------------------------------------------------------------------


def test_update_event_records_old_and_new_values(client_, applicant, admin_client):
    ar = new_request(client=client_, applicant=applicant)
    changed = contacts()
    changed["technical"]["phone"] = "06 00 00 00 00"
    services.access_request_update(
        access_request=ar,
        by=applicant,
        data=full_data(
            label="Aides sociales 2027", privileges=privs("entreprises", "associations"), contacts=changed
        ),
    )
    event = ar.events.get(kind="updated")
    assert event.actor == applicant
    assert event.data["fields"] == ["label", "privileges", "technical_phone"]
    assert event.data["changes"] == {
        "label": {"old": "Aides sociales", "new": "Aides sociales 2027"},
        "privileges": {"old": ["entreprises", "etablissements"], "new": ["associations", "entreprises"]},
        "technical_phone": {"old": "01 02 03 04 05", "new": "06 00 00 00 00"},
    }
    # The admin's history shows them.
    html = admin_client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk])).content.decode()
    assert (
        '<strong>Intitulé du projet</strong>\xa0: <span class="ar-removed">Aides sociales</span> → '
        '<span class="ar-added">Aides sociales 2027</span>'
    ) in html
    assert '<span class="ar-removed">entreprises, etablissements</span>' in html


def test_an_update_changing_nothing_records_no_values(client_, applicant):
    ar = new_request(client=client_, applicant=applicant)
    services.access_request_update(access_request=ar, by=applicant, data=full_data())
    assert ar.events.get(kind="updated").data == {"fields": [], "changes": {}}


@pytest.fixture
def renewal(client_, applicant):
    """A renewal whose requester keeps their email but changes name: validation renames the shared contact."""
    requester = ContactFactory(
        client=client_, email="requester.x@example.org", name="Ancien Nom", role=Contact.Role.REQUESTER
    )
    token = issue_token(client=client_, contacts=[requester]).token
    return submitted_request(client=client_, applicant=applicant, kind="renewal", token=token)


def _row(diff, field):
    return next((r.before, r.after) for r in diff.rows if r.field == field)


def test_validated_diff_is_the_snapshot_taken_at_decision(renewal, instructor, admin_client):
    before = selectors.access_request_diff(access_request=renewal)
    assert _row(before, "requester_name") == ("Ancien Nom", "Requester x")
    assert not before.frozen

    services.access_request_validate(access_request=renewal, by=instructor)
    renewal.refresh_from_db()
    # The baseline moved: recomputed now, "before" would show the new value and the evidence would be lost.
    assert _row(selectors.access_request_diff(access_request=renewal, live=True), "requester_name") == (
        "Requester x",
        "Requester x",
    )
    kept = selectors.access_request_diff(access_request=renewal)
    assert kept.frozen
    assert kept == selectors.AccessRequestDiff.from_data(before.as_data())
    assert _row(kept, "requester_name") == ("Ancien Nom", "Requester x")

    page = admin_client.get(reverse("admin:tokens_accessrequest_change", args=[renewal.pk]))
    html = page.content.decode()
    assert page.context["diff"].frozen and 'id="ar-diff-frozen"' in html
    row = html[html.index('data-field="requester_name"') :].split("</tr>", 1)[0]
    assert "<td>Ancien Nom</td><td>Requester x</td>" in row


def test_refusal_keeps_the_diff_too(renewal, instructor):
    expected = selectors.access_request_diff(access_request=renewal).as_data()
    services.access_request_refuse(access_request=renewal, by=instructor, reason="Incomplet")
    renewal.refresh_from_db()
    assert renewal.state == AccessRequest.State.REFUSED
    assert renewal.decision_diff == expected


def test_sending_back_for_changes_keeps_a_live_diff(renewal, instructor):
    services.access_request_request_changes(access_request=renewal, by=instructor, reason="Précisez.")
    renewal.refresh_from_db()
    assert renewal.decision_diff is None
    assert not selectors.access_request_diff(access_request=renewal).frozen
