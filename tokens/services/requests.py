"""The access-request workflow: one transition = one service = one transaction with its audit event; emails after commit."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from tokenmgr.errors import ApplicationError

from ..models import (
    AccessRequest,
    AccessRequestEvent,
    AccessRequestMessage,
    Client,
    Contact,
    Origin,
    Privilege,
    Token,
)
from ..selectors import (
    access_request_diff,
    access_request_missing,
    access_request_snapshot,
    instructor_conflict,
    instructor_emails,
    is_instructor,
    token_replaceable,
)
from .emails import _absolute, _applicant_email, _request_mail
from .registry import ContactData, contacts_get_or_create, token_issue, token_revoke

# ==============================================================================
# Access requests: one transition = one service = one transaction with its audit event;
# notification emails are sent after commit.
# ==============================================================================


class TransitionNotAllowed(ApplicationError):
    """The request's state does not allow this action."""


@dataclass(frozen=True)
class AccessRequestData:
    """The editable content of a request. `legal_basis_document`: an upload, a stored name (pre-fill) or None (keep)."""

    label: str = ""
    privileges: Sequence[Privilege] = ()
    project_description: str = ""
    legal_basis_nature: str = ""
    legal_basis_text: str = ""
    legal_basis_url: str = ""
    legal_basis_document: object | None = None
    contacts: dict = field(default_factory=dict)
    expected_volume: int | None = None


_TRANSITIONS = {
    "submit": (AccessRequest.State.DRAFT, AccessRequest.State.CHANGES_REQUESTED),
    "update": (AccessRequest.State.DRAFT, AccessRequest.State.CHANGES_REQUESTED),
    "abandon": (AccessRequest.State.DRAFT, AccessRequest.State.CHANGES_REQUESTED),
    "request_changes": (AccessRequest.State.SUBMITTED,),
    "validate": (AccessRequest.State.SUBMITTED,),
    "refuse": (AccessRequest.State.SUBMITTED,),
    "message": AccessRequest.OPEN_STATES,
}
_ACTION_LABELS = {
    "submit": "de soumettre",
    "update": "de modifier",
    "abandon": "d'abandonner",
    "request_changes": "de demander des modifications sur",
    "validate": "de valider",
    "refuse": "de refuser",
    "message": "d'écrire au sujet d'",
}


def _lock_for(access_request: AccessRequest, action: str) -> AccessRequest:
    locked = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    if locked.state not in _TRANSITIONS[action]:
        raise TransitionNotAllowed(
            f"Impossible {_ACTION_LABELS[action]} une demande à l'état « {locked.get_state_display()} ».",
            code="transition_not_allowed",
        )
    return locked


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Un motif est obligatoire.", code="reason_required")
    return reason


def _require_instructor(user) -> None:
    if not is_instructor(user=user):
        raise ApplicationError("Seuls les instructeurs peuvent décider d'une demande.", code="not_instructor")


def _decision_lock(
    access_request: AccessRequest, action: str, *, by, reason: str | None = None
) -> tuple[AccessRequest, str]:
    """An instructor's decision starts here: who may decide, its reason when it needs one, the request locked in a
    state that allows `action`, and no conflict of interest on it. Returns the locked request and the reason."""
    _require_instructor(by)
    reason = "" if reason is None else _require_reason(reason)
    locked = _lock_for(access_request, action)
    _require_no_conflict(by, locked)
    return locked, reason


def _require_no_conflict(user, access_request: AccessRequest) -> None:
    conflict = instructor_conflict(user=user, access_request=access_request)
    if conflict:
        raise ApplicationError(conflict, code="conflict_of_interest")


def _event(access_request, kind, *, by, from_state="", reason="", data=None) -> AccessRequestEvent:
    return AccessRequestEvent.objects.create(
        access_request=access_request,
        kind=kind,
        actor=by,
        from_state=from_state,
        to_state=access_request.state,
        reason=reason,
        data=data or {},
    )


# ------------------------------------------------------------------------------
# Writes
# ------------------------------------------------------------------------------


def _apply_data(access_request: AccessRequest, data: AccessRequestData) -> None:
    access_request.label = data.label.strip()
    access_request.project_description = data.project_description.strip()
    access_request.legal_basis_nature = data.legal_basis_nature
    access_request.legal_basis_text = data.legal_basis_text.strip()
    access_request.legal_basis_url = data.legal_basis_url.strip()
    if data.legal_basis_document is not None:
        access_request.legal_basis_document = data.legal_basis_document or ""
    access_request.contacts = {
        role: {k: (data.contacts.get(role) or {}).get(k, "").strip() for k in ("name", "email", "phone")}
        for role in AccessRequest.CONTACT_ROLES
    }
    access_request.expected_volume = data.expected_volume


@transaction.atomic
def access_request_create(
    *,
    client: Client,
    kind: str,
    applicant,
    data: AccessRequestData,
    token: Token | None = None,
    prefilled_from: AccessRequest | None = None,
) -> AccessRequest:
    """A draft request. Renewal/extension need a live token of the client; one open request per token."""
    if kind not in AccessRequest.Kind.values:
        raise ApplicationError(f"Type de demande inconnu : {kind}.", code="unknown_kind")
    if kind != AccessRequest.Kind.NEW and token is None:
        raise ApplicationError(
            "Un renouvellement ou une extension porte sur un jeton.", code="token_required"
        )
    if token is not None:
        token = Token.objects.select_for_update().get(pk=token.pk)
        if token.client_id != client.pk:
            raise ApplicationError("Ce jeton n'appartient pas à cette organisation.", code="wrong_client")
        if token.revoked_at is not None and not token_replaceable(token=token):
            raise ApplicationError("Ce jeton est révoqué.", code="token_revoked")
        if token.renewed_by_id is not None:
            raise ApplicationError(
                "Ce jeton a déjà été remplacé par un nouveau jeton.", code="token_superseded"
            )
        if AccessRequest.objects.open().filter(token=token).exists():
            raise ApplicationError("Une demande est déjà en cours pour ce jeton.", code="already_open")
    access_request = AccessRequest(
        client=client, kind=kind, applicant=applicant, token=token, prefilled_from=prefilled_from
    )
    _apply_data(access_request, data)
    access_request.save()
    access_request.privileges.set(data.privileges)
    _event(
        access_request,
        AccessRequestEvent.Kind.CREATED,
        by=applicant,
        data={
            "privileges": sorted(p.code for p in data.privileges),
            "token": str(token.public_id) if token else None,
            "prefilled_from": str(prefilled_from.public_id) if prefilled_from else None,
        },
    )
    return access_request


@transaction.atomic
def access_request_update(*, access_request: AccessRequest, by, data: AccessRequestData) -> AccessRequest:
    locked = _lock_for(access_request, "update")
    before = access_request_snapshot(access_request=locked)
    _apply_data(locked, data)
    locked.updated_at = timezone.now()
    locked.save()
    locked.privileges.set(data.privileges)
    after = access_request_snapshot(access_request=locked)
    changed = sorted(k for k in after if after[k] != before.get(k))
    _event(
        locked,
        AccessRequestEvent.Kind.UPDATED,
        by=by,
        from_state=locked.state,
        data={"fields": changed, "changes": {k: {"old": before.get(k), "new": after[k]} for k in changed}},
    )
    return locked


@transaction.atomic
def access_request_submit(*, access_request: AccessRequest, by) -> AccessRequest:
    locked = _lock_for(access_request, "submit")
    missing = access_request_missing(access_request=locked)
    if missing:
        raise ApplicationError("La demande est incomplète : " + ", ".join(missing) + ".", code="incomplete")
    from_state = locked.state
    locked.state = AccessRequest.State.SUBMITTED
    locked.submitted_at = locked.updated_at = timezone.now()
    locked.save(update_fields=["state", "submitted_at", "updated_at"])
    resubmission = from_state == AccessRequest.State.CHANGES_REQUESTED
    _event(
        locked,
        AccessRequestEvent.Kind.SUBMITTED,
        by=by,
        from_state=from_state,
        data={"resubmission": resubmission},
    )
    _request_mail("submitted", to=_applicant_email(locked), access_request=locked, resubmission=resubmission)
    _request_mail("to_instruct", to=instructor_emails(), access_request=locked, resubmission=resubmission)
    return locked


@transaction.atomic
def access_request_request_changes(*, access_request: AccessRequest, by, reason: str) -> AccessRequest:
    locked, reason = _decision_lock(access_request, "request_changes", by=by, reason=reason)
    locked.state = AccessRequest.State.CHANGES_REQUESTED
    locked.updated_at = timezone.now()
    locked.save(update_fields=["state", "updated_at"])
    _event(locked, AccessRequestEvent.Kind.CHANGES_REQUESTED, by=by, from_state="submitted", reason=reason)
    _request_mail("changes_requested", to=_applicant_email(locked), access_request=locked, reason=reason)
    return locked


@transaction.atomic
def access_request_refuse(*, access_request: AccessRequest, by, reason: str) -> AccessRequest:
    """Refusal never touches the token the request was about."""
    locked, reason = _decision_lock(access_request, "refuse", by=by, reason=reason)
    locked.decision_diff = access_request_diff(access_request=locked, live=True).as_data()
    locked.state = AccessRequest.State.REFUSED
    locked.decided_at = locked.updated_at = timezone.now()
    locked.decided_by = by
    locked.save(update_fields=["state", "decided_at", "decided_by", "updated_at", "decision_diff"])
    _event(locked, AccessRequestEvent.Kind.REFUSED, by=by, from_state="submitted", reason=reason)
    _request_mail("refused", to=_applicant_email(locked), access_request=locked, reason=reason)
    return locked


@transaction.atomic
def access_request_abandon(*, access_request: AccessRequest, by) -> AccessRequest:
    """The applicant gives up a draft (or a request sent back for changes); the token is left alone."""
    locked = _lock_for(access_request, "abandon")
    from_state = locked.state
    locked.state = AccessRequest.State.ABANDONED
    locked.updated_at = timezone.now()
    locked.save(update_fields=["state", "updated_at"])
    _event(locked, AccessRequestEvent.Kind.ABANDONED, by=by, from_state=from_state)
    _request_mail("abandoned", to=_applicant_email(locked), access_request=locked)
    return locked


def _contacts_from_snapshot(access_request: AccessRequest) -> list[Contact]:
    role_map = {
        "requester": Contact.Role.REQUESTER,
        "technical": Contact.Role.TECHNICAL,
        "business": Contact.Role.BUSINESS,
    }
    data = [
        ContactData(email=c["email"], name=c.get("name", ""), phone=c.get("phone", ""), role=role_map[role])
        for role in AccessRequest.CONTACT_ROLES
        if (c := access_request.contact(role)).get("email")
    ]
    contacts = contacts_get_or_create(client=access_request.client, contacts=data)
    for contact, wanted in zip(contacts, data, strict=True):
        if (wanted.name and contact.name != wanted.name) or (wanted.phone and contact.phone != wanted.phone):
            contact.name = wanted.name or contact.name
            contact.phone = wanted.phone or contact.phone
            contact.save(update_fields=["name", "phone"])
    return contacts


@transaction.atomic
def access_request_validate(
    *, access_request: AccessRequest, by, revoke_previous: bool = False, revoke_reason: str = ""
) -> Token:
    """Issue the grant: a new api_gouv token, 18 months from now, from the request's snapshot.

    The token the request renews/extends/replaces is superseded (its reminders stop) and keeps working until its own
    expiry, unless `revoke_previous` (with a reason). The new token's secret is generated at pick-up, never here.
    """
    locked, _ = _decision_lock(access_request, "validate", by=by)
    # The evidence, before the grant touches the baseline (the contacts it updates, the token it supersedes).
    decision_diff = access_request_diff(access_request=locked, live=True).as_data()
    if revoke_previous:
        revoke_reason = _require_reason(revoke_reason)
        if locked.token is None:
            raise ApplicationError("Cette demande ne remplace aucun jeton.", code="nothing_to_revoke")
    previous = locked.token
    if previous is not None:
        previous = Token.objects.select_for_update().get(pk=previous.pk)
        if previous.renewed_by_id is not None:
            raise ApplicationError("Le jeton concerné a déjà été remplacé.", code="token_superseded")
    privileges = list(locked.privileges.all())
    if not privileges:
        raise ApplicationError("La demande ne comporte aucun privilège.", code="no_privilege")
    now = timezone.now()
    issued = token_issue(
        client=locked.client,
        privileges=privileges,
        issued_at=now,
        origin=Origin.API_GOUV,
        label=locked.label or (previous.label if previous else "") or f"Demande {str(locked.public_id)[:8]}",
        contacts=_contacts_from_snapshot(locked),
        by=by,
        replaces=previous,
    )
    new = issued.token  # issued.secret is thrown away: nobody ever sees it.
    new.pickup_pending_since = now
    new.save(update_fields=["pickup_pending_since"])
    if revoke_previous and previous is not None and previous.revoked_at is None:
        token_revoke(token=previous, by=by, reason=revoke_reason)
    if previous is not None:
        previous.refresh_from_db()
        locked.token = previous
    locked.state = AccessRequest.State.VALIDATED
    locked.issued_token = new
    locked.decided_at = locked.updated_at = now
    locked.decided_by = by
    locked.decision_diff = decision_diff
    locked.save(
        update_fields=["state", "issued_token", "decided_at", "decided_by", "updated_at", "decision_diff"]
    )
    _event(
        locked,
        AccessRequestEvent.Kind.VALIDATED,
        by=by,
        from_state="submitted",
        reason=revoke_reason if revoke_previous else "",
        data={
            "token": str(new.public_id),
            "replaces": str(previous.public_id) if previous else None,
            "previous_revoked": bool(revoke_previous and previous),
        },
    )
    recipients = _applicant_email(locked) + [
        locked.contact(r).get("email", "") for r in AccessRequest.CONTACT_ROLES
    ]
    _request_mail(
        "validated",
        to=recipients,
        access_request=locked,
        token=new,
        pickup_url=_absolute(reverse("token_pickup", args=[new.public_id])),
    )
    return new


@transaction.atomic
def access_request_message_post(
    *, access_request: AccessRequest, by, body: str, from_instructor: bool
) -> AccessRequestMessage:
    body = (body or "").strip()
    if not body:
        raise ApplicationError("Le message est vide.", code="empty_message")
    if from_instructor:
        _require_instructor(by)
    locked = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    message = AccessRequestMessage.objects.create(
        access_request=locked, author=by, from_instructor=from_instructor, body=body
    )
    _event(
        locked, AccessRequestEvent.Kind.MESSAGE, by=by, from_state=locked.state, data={"message": message.pk}
    )
    to = _applicant_email(locked) if from_instructor else instructor_emails()
    _request_mail("message", to=to, access_request=locked, message=message, from_instructor=from_instructor)
    return message
