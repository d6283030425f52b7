"""Reads on tokens that are more than one QuerySet call."""

import datetime as dt
import enum
import functools
import hmac
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from . import credentials
from .models import Privilege, Token


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
    """Run the query; on a reused connection it doubles as the connection's health check.

    CONN_HEALTH_CHECKS would ping (SELECT 1) before the first query of every request: one more round trip than the
    request needs. Here the query itself is the probe: a connection broken by a database restart is closed and the
    query retried once on a new one, which is what the ping would have achieved.
    """
    reused = connection.connection is not None and not connection.in_atomic_block
    if reused:
        connection.health_check_done = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(_token_check_sql(), [candidate])
            return cursor.fetchall()
    except (OperationalError, InterfaceError):
        if not reused:
            raise
        connection.close()
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


def token_check(*, secret: str, now: dt.datetime, touch: bool = True, max_age: float = 0) -> TokenCheckResult:
    """What /v2/privileges answers for `secret`, in one query (plus a rare last_used_at update).

    With max_age > 0, the answer of the query may be reused for that many seconds in this process (no query at all):
    expiry is still decided on `now`, but a revocation made by another process is seen up to max_age late.
    """
    if not secret:
        return TokenCheckResult(TokenCheck.MISSING)
    if len(secret) > 4096:
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
    if touch:
        resolution = settings.TOKEN_LAST_USED_RESOLUTION
        if checked.last_used_at is None or (now - checked.last_used_at).total_seconds() >= resolution:
            Token.objects.filter(pk=checked.token_id).update(last_used_at=now)
            checked.last_used_at = now
    return TokenCheckResult(
        TokenCheck.OK, checked.token_id, list(checked.privileges)
    )  # a copy: the cache's own stays


def token_by_secret(*, secret: str) -> Token | None:
    """The token whose secret this is (usable or not), by its digest in one indexed query; None if unknown."""
    if not secret or len(secret) > 4096:
        return None
    token = Token.objects.filter(secret_digest=credentials.digest(secret)).select_related("client").first()
    if token is None or not credentials.matches(secret, token.secret_digest):
        return None
    return token
