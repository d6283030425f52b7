"""Every write on tokens, as typed keyword-only functions (one transaction each, with its audit event)."""

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from accounts.identity import InvalidEmail, normalize_email
from tokenmgr.errors import ApplicationError
from tokenmgr.mail import build_email

from . import credentials, signals, validity
from .models import (
    AccessRequest,
    AccessRequestEvent,
    AccessRequestMessage,
    Client,
    ClientMembership,
    ClientMembershipEvent,
    Contact,
    MembershipSource,
    Origin,
    Privilege,
    Token,
    TokenEvent,
)
from .selectors import (
    SIGNUP_MAX_AGE,
    SIGNUP_SALT,
    TokenCheck,
    TokenCheckResult,
    access_request_diff,
    access_request_missing,
    access_request_snapshot,
    check_cache,
    emails_dedupe,
    instructor_conflict,
    instructor_emails,
    is_instructor,
)
from .siret import validate_siret

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedToken:
    token: Token
    secret: str  # shown once to a person, never stored, logged or emailed


@dataclass(frozen=True)
class ContactData:
    email: str
    name: str = ""
    role: str = Contact.Role.REQUESTER
    phone: str = ""


class AlreadyRevoked(ApplicationError):
    """The token was revoked before: a bulk revocation reports it and goes on."""


def privileges_resolve(*, codes: Iterable[str]) -> list[Privilege]:
    """The catalogue's privileges for `codes`; ApplicationError naming any unknown code."""
    wanted = list(dict.fromkeys(c.strip() for c in codes if c and c.strip()))
    if not wanted:
        raise ApplicationError("au moins un privilège est requis", code="no_privilege", field="privileges")
    found = {p.code: p for p in Privilege.objects.filter(code__in=wanted)}
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise ApplicationError(
            f"privilège inconnu : {', '.join(unknown)}", code="unknown_privilege", field="privileges"
        )
    return [found[c] for c in wanted]


def client_get_or_create(*, siret: str, name: str = "") -> Client:
    try:
        validate_siret(siret)
    except ValidationError as error:
        raise ApplicationError(" ".join(error.messages), code="invalid_siret", field="siret") from None
    client, created = Client.objects.get_or_create(siret=siret, defaults={"name": name or siret})
    if not created and name and client.name == client.siret:
        client.name = name
        client.save(update_fields=["name"])
    return client


def contacts_get_or_create(*, client: Client, contacts: Sequence[ContactData]) -> list[Contact]:
    """The client's contacts of these addresses and roles, created when missing; ApplicationError on a bad address."""
    result: list[Contact] = []
    for data in contacts:
        try:
            email = normalize_email(data.email)
        except InvalidEmail as error:
            raise ApplicationError(
                f"{error} ({data.email.strip()})", code="invalid_email", field="email"
            ) from None
        contact = Contact.objects.filter(client=client, email=email, role=data.role).first()
        if contact is None:
            contact = Contact(client=client, email=email, name=data.name, phone=data.phone, role=data.role)
            try:
                contact.full_clean(exclude=["client"], validate_unique=False, validate_constraints=False)
            except ValidationError as error:
                raise ApplicationError(
                    " ".join(error.messages), code="invalid_contact", field="email"
                ) from None
            contact.save()
        result.append(contact)
    return result


@transaction.atomic
def token_issue(
    *,
    client: Client,
    privileges: Sequence[Privilege],
    issued_at: dt.datetime | None = None,
    origin: str | None = None,
    label: str = "",
    contacts: Sequence[Contact] = (),
    by=None,
    secret: str | None = None,
    replaces: Token | None = None,
) -> IssuedToken:
    """Issue a token valid 18 months from `issued_at`. `secret` keeps an existing secret (migration)."""
    issued_at = issued_at or timezone.now()
    if timezone.is_naive(issued_at):
        raise ValueError("issued_at must be timezone-aware")
    if not privileges:
        raise ApplicationError("au moins un privilège est requis", code="no_privilege", field="privileges")
    origin = origin or validity.default_origin(issued_at)
    if origin not in Origin.values:
        raise ApplicationError(f"origine inconnue : {origin}", code="unknown_origin", field="origin")
    secret = secret or credentials.generate_secret()
    token = Token.objects.create(
        client=client,
        label=label,
        issued_at=issued_at,
        expires_at=validity.expiry_for(issued_at),
        origin=origin,
        secret_prefix=credentials.display_prefix(secret),
        secret_digest=credentials.digest(secret),
    )
    token.privileges.set(privileges)
    if contacts:
        token.contacts.set(contacts)
    TokenEvent.objects.create(
        token=token, kind=TokenEvent.Kind.ISSUED, actor=by, data={"privileges": [p.code for p in privileges]}
    )
    if replaces is not None:
        token_supersede(old=replaces, new=token, by=by)
    return IssuedToken(token=token, secret=secret)


def token_use_record(*, check: TokenCheckResult, now: dt.datetime) -> None:
    """Record that a checked token was used: last_used_at, written at most once per TOKEN_LAST_USED_RESOLUTION
    seconds per token (the API's hot path reads far more often than this writes)."""
    if check.outcome is not TokenCheck.OK:
        return
    last = check.last_used_at
    if last is not None and (now - last).total_seconds() < settings.TOKEN_LAST_USED_RESOLUTION:
        return
    Token.objects.filter(pk=check.token_id).update(last_used_at=now)
    check_cache.note_used(check.digest, now)


@transaction.atomic
def token_supersede(*, old: Token, new: Token, by=None) -> None:
    """Link `new` as the successor of `old`: reminders for `old` stop; `old` keeps working until its expiry."""
    old = Token.objects.select_for_update().get(pk=old.pk)
    old.renewed_by = new
    old.save(update_fields=["renewed_by"])
    TokenEvent.objects.create(
        token=old, kind=TokenEvent.Kind.SUPERSEDED, actor=by, data={"by": str(new.public_id)}
    )
    signals.token_superseded.send(sender=Token, old=old, new=new, by=by)


@transaction.atomic
def token_revoke(*, token: Token, by, reason: str) -> Token:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("un motif de révocation est requis", code="reason_required", field="reason")
    token = Token.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise AlreadyRevoked("ce jeton est déjà révoqué", code="already_revoked")
    token.revoked_at = timezone.now()
    token.revoked_by = by
    token.revocation_reason = reason
    token.save(update_fields=["revoked_at", "revoked_by", "revocation_reason"])
    TokenEvent.objects.create(token=token, kind=TokenEvent.Kind.REVOKED, actor=by, reason=reason)
    signals.token_revoked.send(sender=Token, token=token, by=by, reason=reason)
    return token


# ------------------------------------------------------------------------------
# Deletions that change tokens: each changed token gets its event, the token-check cache is emptied
# ------------------------------------------------------------------------------


def _require_perms(user, *perms: str) -> None:
    if user is None or not user.has_perms(perms):
        raise PermissionDenied("Vous n'avez pas les droits nécessaires pour cette suppression.")


def _tokens_changed(*, token_ids: Sequence[int], kind: str, by, data: dict) -> None:
    """One audit event per changed token; this process's token checks forgotten now and after commit."""
    TokenEvent.objects.bulk_create(
        [TokenEvent(token_id=pk, kind=kind, actor=by, data=data) for pk in token_ids], batch_size=1000
    )
    check_cache.clear()
    transaction.on_commit(check_cache.clear)


def _linked_delete(obj, *, link_field: str, perm: str, kind: str, by, data: dict) -> int:
    """Delete a contact or a privilege: each token linked to it loses it, with one event per token, and this
    process's token checks are forgotten. Needs `perm`, and the token change permission when tokens are linked.
    The row is locked first: a token being issued with it at the same time waits, then fails on the deleted row."""
    _require_perms(by, perm)
    obj = type(obj).objects.select_for_update().get(pk=obj.pk)
    links = getattr(Token, link_field).through.objects.filter(**{link_field[:-1]: obj})
    token_ids = list(links.order_by("token_id").values_list("token_id", flat=True))
    if token_ids:
        _require_perms(by, "tokens.change_token")
    _tokens_changed(token_ids=token_ids, kind=kind, by=by, data=data)
    obj.delete()
    return len(token_ids)


@transaction.atomic
def privilege_delete(*, privilege: Privilege, by) -> int:
    """Remove a privilege from the catalogue: every token holding it loses it, with an event. Returns their number."""
    return _linked_delete(
        privilege,
        link_field="privileges",
        perm="tokens.delete_privilege",
        kind=TokenEvent.Kind.PRIVILEGE_REMOVED,
        by=by,
        data={"privilege": privilege.code, "label": privilege.label},
    )


@transaction.atomic
def contact_delete(*, contact: Contact, by) -> int:
    """Delete a contact: every token listing it loses it, with an event. Returns their number."""
    return _linked_delete(
        contact,
        link_field="contacts",
        perm="tokens.delete_contact",
        kind=TokenEvent.Kind.CONTACT_REMOVED,
        by=by,
        data={"contact": contact.email, "role": contact.role},
    )


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
# Emails (templates/emails/request_<name>_subject.txt | _body.txt | _body.html)
# ------------------------------------------------------------------------------


def _absolute(path: str) -> str:
    return settings.SITE_URL + path


def _request_mail(name: str, *, to: Sequence[str], access_request: AccessRequest, **extra) -> None:
    """Render and send after commit; a failed send is logged, it never undoes the transition."""
    recipients = emails_dedupe(emails=to)
    if not recipients:
        return
    context = {
        "access_request": access_request,
        "client": access_request.client,
        "request_url": _absolute(reverse("request_detail", args=[access_request.public_id])),
        "admin_url": _absolute(reverse("admin:tokens_accessrequest_change", args=[access_request.pk])),
        **extra,
    }
    message = build_email(
        f"emails/request_{name}",
        context,
        to=recipients,
        headers={"X-Access-Request-Id": str(access_request.public_id)},
    )

    def send() -> None:
        try:
            message.send()
        except Exception:
            logger.exception("access request email %s failed for %s", name, access_request.public_id)

    transaction.on_commit(send)


def _applicant_email(access_request: AccessRequest) -> list[str]:
    return [access_request.applicant.email]


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
        if token.revoked_at is not None:
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
    _require_instructor(by)
    reason = _require_reason(reason)
    locked = _lock_for(access_request, "request_changes")
    _require_no_conflict(by, locked)
    locked.state = AccessRequest.State.CHANGES_REQUESTED
    locked.updated_at = timezone.now()
    locked.save(update_fields=["state", "updated_at"])
    _event(locked, AccessRequestEvent.Kind.CHANGES_REQUESTED, by=by, from_state="submitted", reason=reason)
    _request_mail("changes_requested", to=_applicant_email(locked), access_request=locked, reason=reason)
    return locked


@transaction.atomic
def access_request_refuse(*, access_request: AccessRequest, by, reason: str) -> AccessRequest:
    """Refusal never touches the token the request was about."""
    _require_instructor(by)
    reason = _require_reason(reason)
    locked = _lock_for(access_request, "refuse")
    _require_no_conflict(by, locked)
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
    _require_instructor(by)
    locked = _lock_for(access_request, "validate")
    _require_no_conflict(by, locked)
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


# ------------------------------------------------------------------------------
# Token pick-up: the secret is generated when it is shown, shown once, never stored.
# ------------------------------------------------------------------------------


@transaction.atomic
def token_secret_reveal(*, token: Token, by) -> str:
    """First and only display of a validated token's secret: a fresh secret replaces the throw-away one."""
    token = Token.objects.select_for_update().get(pk=token.pk)
    if token.pickup_pending_since is None:
        raise ApplicationError(
            "Le secret de ce jeton a déjà été récupéré ; en cas de perte, régénérez-le.",
            code="already_revealed",
        )
    if not token.is_usable():
        raise ApplicationError("Ce jeton n'est plus utilisable.", code="token_unusable")
    secret = credentials.generate_secret()
    token.secret_prefix = credentials.display_prefix(secret)
    token.secret_digest = credentials.digest(secret)
    token.pickup_pending_since = None
    token.save(update_fields=["secret_prefix", "secret_digest", "pickup_pending_since"])
    TokenEvent.objects.create(
        token=token, kind=TokenEvent.Kind.REVEALED, actor=by, data={"prefix": token.secret_prefix}
    )
    return secret


@transaction.atomic
def token_secret_regenerate(*, token: Token, by, reason: str = "") -> str:
    """A lost secret: a new one, same validity; the old secret stops working at once."""
    token = Token.objects.select_for_update().get(pk=token.pk)
    if token.pickup_pending_since is not None:
        raise ApplicationError("Le secret de ce jeton n'a pas encore été récupéré.", code="pickup_pending")
    if not token.is_usable():
        raise ApplicationError("Ce jeton n'est plus utilisable.", code="token_unusable")
    old_prefix = token.secret_prefix
    secret = credentials.generate_secret()
    token.secret_prefix = credentials.display_prefix(secret)
    token.secret_digest = credentials.digest(secret)
    token.save(update_fields=["secret_prefix", "secret_digest"])
    TokenEvent.objects.create(
        token=token,
        kind=TokenEvent.Kind.REGENERATED,
        actor=by,
        reason=(reason or "").strip(),
        data={"old_prefix": old_prefix, "prefix": token.secret_prefix},
    )
    return secret


# ------------------------------------------------------------------------------
# Access to clients: proved by a contact's own mailbox, or granted by an admin
# ------------------------------------------------------------------------------


@transaction.atomic
def memberships_sync_from_proof(*, user) -> list[Client]:
    """`user` just proved they receive mail at `user.email` (they followed a link mailed there: sign-up
    confirmation, login link, password reset, reminder link): join every client one of whose tokens lists that exact
    address as a contact. Returns the clients joined now. Access lasts while the address stays such a contact
    (ClientMembership.objects.effective())."""
    email = normalize_email(user.email)
    clients = list(
        Client.objects.filter(contacts__email=email, contacts__tokens__client=F("pk"))
        .exclude(memberships__user=user)
        .distinct()
        .order_by("pk")
    )
    for client in clients:
        _, created = ClientMembership.objects.get_or_create(
            client=client, user=user, defaults={"source": MembershipSource.CONTACT, "email": email}
        )
        if created:
            ClientMembershipEvent.objects.create(
                client=client,
                user=user,
                email=email,
                kind=ClientMembershipEvent.Kind.PROVED,
                source=MembershipSource.CONTACT,
                actor=user,
            )
    # A membership proved earlier with another address of the same account now counts with this one.
    ClientMembership.objects.filter(user=user, source=MembershipSource.CONTACT).exclude(email=email).update(
        email=email
    )
    return clients


@transaction.atomic
def client_membership_grant(*, client: Client, user, by, reason: str = "") -> ClientMembership:
    """An admin's explicit grant: lasts whether or not the person is a contact, until an admin removes it."""
    membership, created = ClientMembership.objects.select_for_update().get_or_create(
        client=client,
        user=user,
        defaults={"source": MembershipSource.ADMIN, "granted_by": by},
    )
    if not created and membership.source == MembershipSource.ADMIN:
        return membership
    if not created:
        membership.source, membership.granted_by, membership.email = MembershipSource.ADMIN, by, ""
        membership.save(update_fields=["source", "granted_by", "email"])
    ClientMembershipEvent.objects.create(
        client=client,
        user=user,
        email=user.email,
        kind=ClientMembershipEvent.Kind.GRANTED,
        source=MembershipSource.ADMIN,
        actor=by,
        reason=(reason or "").strip(),
    )
    return membership


@transaction.atomic
def client_membership_remove(*, membership: ClientMembership, by, reason: str = "") -> None:
    """An admin removes someone's access: effective on that person's next request. A contact who proves their
    address again (next link followed) joins again: stop listing them as a contact to keep them out."""
    membership = ClientMembership.objects.select_related("user").filter(pk=membership.pk).first()
    if membership is None:
        return
    ClientMembershipEvent.objects.create(
        client_id=membership.client_id,
        user=membership.user,
        email=membership.user.email,
        kind=ClientMembershipEvent.Kind.REMOVED,
        source=membership.source,
        actor=by,
        reason=(reason or "").strip(),
    )
    membership.delete()


# ------------------------------------------------------------------------------
# Accounts (legacy route: account creation with a verified email)
# ------------------------------------------------------------------------------


@transaction.atomic
def user_signup(*, email: str, password: str, first_name: str = "", last_name: str = ""):
    """Create the account of an address just proved by its signed link, then join the clients it is a contact of."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    try:
        email = normalize_email(email)
    except InvalidEmail as error:
        raise ApplicationError(str(error), code="invalid_email") from None
    if User.objects.filter(email=email).exists():
        raise ApplicationError(
            "Un compte existe déjà pour cette adresse ; connectez-vous.", code="user_exists"
        )
    user = User.objects.create_user(
        email=email, password=password, first_name=first_name, last_name=last_name
    )
    memberships_sync_from_proof(user=user)
    return user


@transaction.atomic
def user_account_complete(*, user, password: str, first_name: str = "", last_name: str = ""):
    """A user created by a magic link (no password yet) finishes their account."""
    user.set_password(password)
    user.first_name = first_name.strip() or user.first_name
    user.last_name = last_name.strip() or user.last_name
    user.save(update_fields=["password", "first_name", "last_name"])
    return user


def signup_link_send(*, email: str, next_url: str = "") -> None:
    """Email a signed link proving the address; the account is created when the link is followed."""
    from django.core import signing

    email = normalize_email(email)
    signed = signing.dumps({"email": email, "next": next_url}, salt=SIGNUP_SALT)
    context = {
        "email": email,
        "confirm_url": _absolute(reverse("signup_confirm", args=[signed])),
        "max_age_hours": SIGNUP_MAX_AGE // 3600,
    }
    build_email("emails/request_account_verify", context, to=[email]).send()
