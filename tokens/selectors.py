"""Reads on tokens that are more than one QuerySet call."""

import datetime as dt
import enum
import functools
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


def token_check(*, secret: str, now: dt.datetime, touch: bool = True) -> TokenCheckResult:
    """What /v2/privileges answers for `secret`, in one query (plus a rare last_used_at update)."""
    if not secret:
        return TokenCheckResult(TokenCheck.MISSING)
    if len(secret) > 4096:
        return TokenCheckResult(TokenCheck.INVALID)
    rows = _token_check_rows(credentials.digest(secret))
    if not rows or not credentials.matches(secret, rows[0][1]):
        return TokenCheckResult(TokenCheck.INVALID)
    token_id, _, revoked_at, expires_at, last_used_at, _ = rows[0]
    revoked_at, expires_at, last_used_at = (_aware(v) for v in (revoked_at, expires_at, last_used_at))
    if revoked_at is not None:
        return TokenCheckResult(TokenCheck.REVOKED, token_id)
    if expires_at <= now:
        return TokenCheckResult(TokenCheck.EXPIRED, token_id)
    if touch:
        resolution = settings.TOKEN_LAST_USED_RESOLUTION
        if last_used_at is None or (now - last_used_at).total_seconds() >= resolution:
            Token.objects.filter(pk=token_id).update(last_used_at=now)
    return TokenCheckResult(TokenCheck.OK, token_id, [r[5] for r in rows if r[5]])


def token_by_secret(*, secret: str) -> Token | None:
    """The token whose secret this is (usable or not), by its digest in one indexed query; None if unknown."""
    if not secret or len(secret) > 4096:
        return None
    token = Token.objects.filter(secret_digest=credentials.digest(secret)).select_related("client").first()
    if token is None or not credentials.matches(secret, token.secret_digest):
        return None
    return token
