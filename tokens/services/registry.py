"""The token registry's writes: clients, contacts, tokens (issue, use, supersede, revoke, secret pick-up), deletions that change tokens."""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.identity import InvalidEmail, normalize_email
from tokenmgr.errors import ApplicationError

from .. import credentials, signals, validity
from ..models import (
    Client,
    Contact,
    Origin,
    Privilege,
    Token,
    TokenEvent,
)
from ..selectors import (
    TokenCheck,
    TokenCheckResult,
    check_cache,
)
from ..siret import validate_siret


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
