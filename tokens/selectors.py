"""Reads on tokens that are more than one QuerySet call."""

import datetime as dt
import enum
import functools
import hmac
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Count
from django.utils.translation import gettext_lazy as _lazy

from accounts.identity import normalize_email_or_none
from tokenmgr.errors import ApplicationError

from . import credentials
from .models import AccessRequest, Privilege, Token, TokenStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser, AnonymousUser


class TokenCheck(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    INVALID = "invalid"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class TokenCheckResult:
    outcome: TokenCheck
    token_id: int | None = None
    privileges: list[str] = field(default_factory=list)
    last_used_at: dt.datetime | None = (
        None  # as last read (OK outcomes): services.token_use_record decides on it
    )
    digest: str = ""


@functools.cache
def _token_check_sql() -> str:
    """The hot path's one query, built once from the models (raw SQL: the ORM's compile costs more than the query).

    Same as Token.objects.filter(secret_digest=…).values_list(…, "privileges__code").order_by("privileges__code").
    """
    qn = connection.ops.quote_name
    through = Token.privileges.through
    token, link, privilege = (qn(m._meta.db_table) for m in (Token, through, Privilege))
    token_fk = qn(through._meta.get_field("token").column)
    privilege_fk = qn(through._meta.get_field("privilege").column)
    return (
        f"SELECT t.id, t.secret_digest, t.revoked_at, t.expires_at, t.last_used_at, p.code "  # noqa: S608
        f"FROM {token} t LEFT JOIN {link} l ON l.{token_fk} = t.id "
        f"LEFT JOIN {privilege} p ON p.id = l.{privilege_fk} "
        f"WHERE t.secret_digest = %s ORDER BY p.code"
    )


def _token_check_rows(candidate: str) -> list[tuple]:
    """Run the query (a connection broken by a database restart is replaced first: CONN_HEALTH_CHECKS)."""
    with connection.cursor() as cursor:
        cursor.execute(_token_check_sql(), [candidate])
        return cursor.fetchall()


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """Raw SQL skips the ORM's converters: SQLite returns naive datetimes (stored in UTC under USE_TZ)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@dataclass
class _Checked:
    """What the token check query said about one digest, kept briefly in this process (see token_check)."""

    loaded_at: float  # check_cache.clock()
    token_id: int | None  # None: unknown digest
    revoked_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    privileges: list[str] = field(default_factory=list)


class _CheckCache:
    """Checks of known tokens by digest, in this process only; bounded, oldest entries dropped first.

    Any save or delete of a token, change of its privileges or revocation in this process empties it (signals in
    tokens/apps.py); in the other processes an entry lives at most the caller's max_age.
    """

    MAX_ENTRIES = 20_000
    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._entries: dict[str, _Checked] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, max_age: float) -> _Checked | None:
        entry = self._entries.get(digest)
        if entry is None or self.clock() - entry.loaded_at >= max_age:
            return None
        return entry

    def put(self, digest: str, entry: _Checked) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                for old in list(self._entries)[: self.MAX_ENTRIES // 10]:  # insertion order: the oldest first
                    self._entries.pop(old, None)
            self._entries.pop(digest, None)
            self._entries[digest] = entry

    def note_used(self, digest: str, at: dt.datetime) -> None:
        """The token of `digest` was just marked used (services.token_use_record): later checks see it."""
        entry = self._entries.get(digest)
        if entry is not None:
            entry.last_used_at = at

    def clear(self, **kwargs) -> None:
        with self._lock:
            self._entries = {}


check_cache = _CheckCache()


def _load(candidate: str) -> _Checked:
    rows = _token_check_rows(candidate)
    if not rows or not hmac.compare_digest(candidate, rows[0][1]):
        return _Checked(loaded_at=check_cache.clock(), token_id=None)
    token_id, _, revoked_at, expires_at, last_used_at, _ = rows[0]
    return _Checked(
        loaded_at=check_cache.clock(),
        token_id=token_id,
        revoked_at=_aware(revoked_at),
        expires_at=_aware(expires_at),
        last_used_at=_aware(last_used_at),
        privileges=[r[5] for r in rows if r[5]],
    )


def token_check(*, secret: str, now: dt.datetime, max_age: float = 0) -> TokenCheckResult:
    """What /v2/privileges answers for `secret`, in one query; it writes nothing (services.token_use_record does).

    With max_age > 0, the answer of the query may be reused for that many seconds in this process (no query at all):
    expiry is still decided on `now`, but a revocation made by another process is seen up to max_age late.
    """
    if not secret:
        return TokenCheckResult(TokenCheck.MISSING)
    if len(secret) > credentials.SECRET_MAX_LENGTH:
        return TokenCheckResult(TokenCheck.INVALID)
    candidate = credentials.digest(secret)
    checked = check_cache.get(candidate, max_age) if max_age > 0 else None
    if checked is None:
        checked = _load(candidate)
        if (
            max_age > 0 and checked.token_id is not None
        ):  # unknown secrets are never cached: a new token works at once
            check_cache.put(candidate, checked)
    if checked.token_id is None:
        return TokenCheckResult(TokenCheck.INVALID)
    if checked.revoked_at is not None:
        return TokenCheckResult(TokenCheck.REVOKED, checked.token_id)
    if checked.expires_at <= now:
        return TokenCheckResult(TokenCheck.EXPIRED, checked.token_id)
    return TokenCheckResult(
        TokenCheck.OK,
        checked.token_id,
        list(checked.privileges),  # a copy: the cache's own stays
        last_used_at=checked.last_used_at,
        digest=candidate,
    )


def token_by_secret(*, secret: str) -> Token | None:
    """The token whose secret this is (usable or not), by its digest in one indexed query; None if unknown."""
    if not secret or len(secret) > credentials.SECRET_MAX_LENGTH:
        return None
    token = Token.objects.filter(secret_digest=credentials.digest(secret)).select_related("client").first()
    if token is None or not credentials.matches(secret, token.secret_digest):
        return None
    return token


def privileges_resolve(*, codes: Iterable[str]) -> list[Privilege]:
    """The catalogue's privileges for `codes`; ApplicationError naming any unknown code (a read: no write)."""
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


# ==============================================================================
# Access requests: reads used by the workflow (tokens/services/requests.py), the request pages and the admin —
# instructors, pre-fill, completeness, diff, signup links. Nothing below writes or sends mail.
# ==============================================================================

INSTRUCT_PERMISSION = "tokens.instruct_accessrequest"


def is_instructor(*, user: "AbstractUser | AnonymousUser | None") -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(INSTRUCT_PERMISSION))


def instructor_conflict(*, user, access_request: AccessRequest) -> str:
    """Why `user` may not decide `access_request` ('' when they may): nobody judges their own request, nor one
    concerning a client they are a member of."""
    from django.utils.translation import gettext as _

    if user is None or not user.is_authenticated:
        return ""
    if access_request.applicant_id is not None and access_request.applicant_id == user.pk:
        return _("Vous avez vous-même déposé cette demande : un autre instructeur doit en décider.")
    if access_request.client.members.filter(pk=user.pk).exists():
        return _(
            "Vous êtes membre de l'organisation concernée par cette demande : un autre instructeur doit en décider."
        )
    return ""


def emails_dedupe(*, emails: Iterable[str]) -> list[str]:
    """`emails` stripped, without blanks, each address once (by its normalized form: look-alikes stay distinct),
    first spelling kept, in order."""
    seen: dict[str, str] = {}
    for email in emails:
        email = (email or "").strip()
        key = normalize_email_or_none(email) or email
        if email and key not in seen:
            seen[key] = email
    return list(seen.values())


def instructor_emails() -> list[str]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    perm = Permission.objects.filter(
        codename="instruct_accessrequest", content_type__app_label="tokens"
    ).first()
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    users = users.filter(Q(is_superuser=True) | Q(user_permissions=perm) | Q(groups__permissions=perm))
    return emails_dedupe(emails=users.distinct().values_list("email", flat=True))


def access_request_snapshot(*, access_request: AccessRequest) -> dict:
    """The comparable content of a request (what the diff and the audit compare)."""
    return {
        "label": access_request.label,
        "privileges": sorted(p.code for p in access_request.privileges.all()) if access_request.pk else [],
        "project_description": access_request.project_description,
        "legal_basis_nature": access_request.legal_basis_nature,
        "legal_basis_text": access_request.legal_basis_text,
        "legal_basis_url": access_request.legal_basis_url,
        "legal_basis_document": access_request.legal_basis_document.name or "",
        "expected_volume": access_request.expected_volume,
        **{
            f"{role}_{k}": access_request.contact(role).get(k, "")
            for role in AccessRequest.CONTACT_ROLES
            for k in ("name", "email", "phone")
        },
    }


def _token_snapshot(*, token: Token) -> dict:
    snapshot = {"label": token.label, "privileges": sorted(p.code for p in token.privileges.all())}
    for role in AccessRequest.CONTACT_ROLES:
        contact = token.contacts.filter(role=role).order_by("id").first()
        for k in ("name", "email", "phone"):
            snapshot[f"{role}_{k}"] = getattr(contact, k, "") if contact else ""
    return snapshot


def access_request_missing(*, access_request: AccessRequest) -> list[str]:
    """What is still missing before submission (French field names)."""
    missing = []
    if not access_request.privileges.exists():
        missing.append("au moins un privilège")
    if not access_request.project_description.strip():
        missing.append("la description du projet")
    if not access_request.legal_basis_nature:
        missing.append("la nature du cadre juridique")
    if not access_request.legal_basis_text.strip():
        missing.append("le cadre juridique")
    if not access_request.legal_basis_url and not access_request.legal_basis_document:
        missing.append("le lien vers le texte ou le document PDF")
    labels = {
        "requester": "du demandeur",
        "technical": "du contact technique",
        "business": "du contact métier",
    }
    for role in AccessRequest.CONTACT_ROLES:
        contact = access_request.contact(role)
        if not contact.get("name") or not contact.get("email"):
            missing.append(f"le nom et l'e-mail {labels[role]}")
    if access_request.expected_volume is None:
        missing.append("la volumétrie attendue")
    return missing


def token_last_validated_request(*, token: Token) -> AccessRequest | None:
    """The validated request that issued this token (or, failing that, the last one validated about it)."""
    issuing = AccessRequest.objects.filter(issued_token=token, state=AccessRequest.State.VALIDATED).first()
    if issuing is not None:
        return issuing
    return (
        AccessRequest.objects.filter(token=token, state=AccessRequest.State.VALIDATED)
        .order_by("-decided_at", "-id")
        .first()
    )


DIFF_LABELS = {
    "label": _lazy("Intitulé du projet"),
    "project_description": _lazy("Description du projet"),
    "legal_basis_nature": _lazy("Nature du cadre juridique"),
    "legal_basis_text": _lazy("Cadre juridique"),
    "legal_basis_url": _lazy("Lien vers le texte"),
    "legal_basis_document": _lazy("Document PDF"),
    "expected_volume": _lazy("Volumétrie (appels/min)"),
    "requester_name": _lazy("Demandeur — nom"),
    "requester_email": _lazy("Demandeur — e-mail"),
    "requester_phone": _lazy("Demandeur — téléphone"),
    "technical_name": _lazy("Contact technique — nom"),
    "technical_email": _lazy("Contact technique — e-mail"),
    "technical_phone": _lazy("Contact technique — téléphone"),
    "business_name": _lazy("Contact métier — nom"),
    "business_email": _lazy("Contact métier — e-mail"),
    "business_phone": _lazy("Contact métier — téléphone"),
}


@dataclass(frozen=True)
class DiffRow:
    field: str
    label: str
    before: object
    after: object

    @property
    def changed(self) -> bool:
        return (self.before or "") != (self.after or "")


@dataclass(frozen=True)
class AccessRequestDiff:
    baseline: str  # "request", "token" or "" (nothing to compare with)
    rows: list[DiffRow]
    privileges_added: list[str]
    privileges_removed: list[str]
    privileges_kept: list[str]

    frozen: bool = False  # read from the snapshot kept with the decision

    @property
    def changed_rows(self) -> list[DiffRow]:
        return [r for r in self.rows if r.changed] if self.baseline else []

    def as_data(self) -> dict:
        """JSON-ready form, kept with the decision (AccessRequest.decision_diff)."""
        return {
            "baseline": self.baseline,
            "rows": [{"field": r.field, "before": r.before, "after": r.after} for r in self.rows],
            "privileges_added": self.privileges_added,
            "privileges_removed": self.privileges_removed,
            "privileges_kept": self.privileges_kept,
        }

    @classmethod
    def from_data(cls, data: dict) -> "AccessRequestDiff":
        return cls(
            baseline=data.get("baseline", ""),
            rows=[
                DiffRow(r["field"], DIFF_LABELS.get(r["field"], r["field"]), r.get("before"), r.get("after"))
                for r in data.get("rows", [])
            ],
            privileges_added=list(data.get("privileges_added", [])),
            privileges_removed=list(data.get("privileges_removed", [])),
            privileges_kept=list(data.get("privileges_kept", [])),
            frozen=True,
        )


def access_request_diff(*, access_request: AccessRequest, live: bool = False) -> AccessRequestDiff:
    """Field by field against the request it was pre-filled from (else the token it is about).

    A decided request answers with the diff kept with its decision (what the instructor saw), unless `live`.
    """
    if access_request.decision_diff and not live:
        return AccessRequestDiff.from_data(access_request.decision_diff)
    after = access_request_snapshot(access_request=access_request)
    if access_request.prefilled_from is not None:
        baseline, before = "request", access_request_snapshot(access_request=access_request.prefilled_from)
    elif access_request.token is not None and access_request.kind != AccessRequest.Kind.NEW:
        baseline, before = "token", _token_snapshot(token=access_request.token)
    else:
        baseline, before = "", {}
    if access_request.kind == AccessRequest.Kind.EXTENSION and access_request.token is not None:
        # What an extension adds is measured against the token in force.
        before_privileges = {p.code for p in access_request.token.privileges.all()}
    else:
        before_privileges = set(before.get("privileges", []))
    after_privileges = set(after["privileges"])
    rows = [
        DiffRow(k, label, before.get(k, "") if baseline else None, after.get(k))
        for k, label in DIFF_LABELS.items()
    ]
    return AccessRequestDiff(
        baseline=baseline,
        rows=rows,
        privileges_added=sorted(after_privileges - before_privileges)
        if baseline
        else sorted(after_privileges),
        privileges_removed=sorted(before_privileges - after_privileges),
        privileges_kept=sorted(after_privileges & before_privileges),
    )


SIGNUP_SALT = "tokenmgr.signup"
SIGNUP_MAX_AGE = 2 * 24 * 3600


def signup_link_read(*, signed: str) -> dict | None:
    """{"email", "next"} of a valid, unexpired signup link; None otherwise."""
    from django.core import signing

    try:
        return signing.loads(signed, salt=SIGNUP_SALT, max_age=SIGNUP_MAX_AGE)
    except signing.BadSignature:
        return None


def token_counts_by_status(now: dt.datetime | None = None) -> dict[str, int]:
    """How many tokens have each status (Token.objects.with_status), every status listed: one aggregate query."""
    counts = dict.fromkeys(TokenStatus.values, 0)
    rows = Token.objects.with_status(now).order_by().values_list("status").annotate(count=Count("pk"))
    counts.update(rows)
    return counts


def token_replaceable(*, token: Token) -> bool:
    """Whether a renewal (or a new request on the legacy route) may replace `token`: not already superseded, and
    not revoked — unless it was revoked because its secret was exposed, which is exactly when it must be replaced."""
    if token.renewed_by_id is not None:
        return False
    return token.revoked_at is None or token.exposures.exists()
