"""Reads on tokens that are more than one QuerySet call."""

import datetime as dt
import enum
from dataclasses import dataclass, field

from django.conf import settings

from . import credentials
from .models import Token


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


def token_check(*, secret: str, now: dt.datetime, touch: bool = True) -> TokenCheckResult:
    """What /v2/privileges answers for `secret`, in one query (plus a rare last_used_at update)."""
    if not secret:
        return TokenCheckResult(TokenCheck.MISSING)
    if len(secret) > 4096:
        return TokenCheckResult(TokenCheck.INVALID)
    candidate = credentials.digest(secret)
    rows = list(
        Token.objects.filter(secret_digest=candidate)
        .values_list("id", "secret_digest", "revoked_at", "expires_at", "last_used_at", "privileges__code")
        .order_by("privileges__code")
    )
    if not rows or not credentials.matches(secret, rows[0][1]):
        return TokenCheckResult(TokenCheck.INVALID)
    token_id, _, revoked_at, expires_at, last_used_at, _ = rows[0]
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
