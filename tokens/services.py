"""Every write on tokens, as typed keyword-only functions (one transaction each, with its audit event)."""

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import credentials, validity
from .models import Client, Contact, Origin, Privilege, Token, TokenEvent
from .siret import validate_siret


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


def privileges_resolve(*, codes: Iterable[str]) -> list[Privilege]:
    """The catalogue's privileges for `codes`; ValidationError naming any unknown code."""
    wanted = list(dict.fromkeys(c.strip() for c in codes if c and c.strip()))
    if not wanted:
        raise ValidationError("au moins un privilège est requis", code="no_privilege")
    found = {p.code: p for p in Privilege.objects.filter(code__in=wanted)}
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise ValidationError(f"privilège inconnu : {', '.join(unknown)}", code="unknown_privilege")
    return [found[c] for c in wanted]


def client_get_or_create(*, siret: str, name: str = "") -> Client:
    validate_siret(siret)
    client, created = Client.objects.get_or_create(siret=siret, defaults={"name": name or siret})
    if not created and name and client.name == client.siret:
        client.name = name
        client.save(update_fields=["name"])
    return client


def contacts_get_or_create(*, client: Client, contacts: Sequence[ContactData]) -> list[Contact]:
    result: list[Contact] = []
    for data in contacts:
        email = data.email.strip()
        contact = Contact.objects.filter(client=client, email__iexact=email, role=data.role).first()
        if contact is None:
            contact = Contact(client=client, email=email, name=data.name, phone=data.phone, role=data.role)
            contact.full_clean(exclude=["client"], validate_unique=False, validate_constraints=False)
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
        raise ValidationError("issued_at must be timezone-aware")
    if not privileges:
        raise ValidationError("au moins un privilège est requis", code="no_privilege")
    origin = origin or validity.default_origin(issued_at)
    if origin not in Origin.values:
        raise ValidationError(f"origine inconnue : {origin}", code="unknown_origin")
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


@transaction.atomic
def token_supersede(*, old: Token, new: Token, by=None) -> None:
    """Link `new` as the successor of `old`: reminders for `old` stop; `old` keeps working until its expiry."""
    old = Token.objects.select_for_update().get(pk=old.pk)
    old.renewed_by = new
    old.save(update_fields=["renewed_by"])
    TokenEvent.objects.create(
        token=old, kind=TokenEvent.Kind.SUPERSEDED, actor=by, data={"by": str(new.public_id)}
    )


@transaction.atomic
def token_revoke(*, token: Token, by, reason: str) -> Token:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("un motif de révocation est requis", code="reason_required")
    token = Token.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise ValidationError("ce jeton est déjà révoqué", code="already_revoked")
    token.revoked_at = timezone.now()
    token.revoked_by = by
    token.revocation_reason = reason
    token.save(update_fields=["revoked_at", "revoked_by", "revocation_reason"])
    TokenEvent.objects.create(token=token, kind=TokenEvent.Kind.REVOKED, actor=by, reason=reason)
    return token
