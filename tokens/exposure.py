"""Exposed secrets: a report (from a secret scanner, or from the token's holder) marks the token exposed where it was
seen and, under EXPOSED_TOKEN_POLICY=revoke (the default), revokes it at once; its contacts are told through the
`token_exposed` signal (notifications.exposure queues one message per recipient, once per token).

A reported secret is looked up only when it may be one of ours: a secret with the shape of a checksummed secret but a
wrong checksum is refused without touching the database; other shapes (secrets issued before the checksum, imported
ones) are looked up by digest, as the API does. Nothing is stored for a secret that matches no token, and the secret
itself is never stored nor logged.
"""

import enum

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import credentials, signals
from .models import ExposureReporter, Token, TokenEvent, TokenExposure
from .models_exposure import SOURCE_MAX_LENGTH, URL_MAX_LENGTH
from .selectors import token_by_secret
from .services import token_revoke

EXPOSED_REASON = "secret exposé"
POLICY_REVOKE = "revoke"
POLICY_FLAG = "flag"
PORTAL_SOURCE = "portal"  # the holder's own report, from the token's page


class Outcome(enum.StrEnum):
    MATCHED = "matched"  # the secret of a token (live or not)
    UNMATCHED = "unmatched"  # no token has this secret
    INVALID = "invalid"  # not a secret of ours (wrong checksum, not a string…): never looked up


def policy() -> str:
    return settings.EXPOSED_TOKEN_POLICY


def may_be_ours(secret: str) -> bool:
    """Whether `secret` is worth a lookup: a right checksum, or a shape without one (older and imported secrets).
    No database."""
    if not secret or len(secret) > 4096:
        return False
    if credentials.has_checksum_shape(secret):
        return credentials.secret_checksum_valid(secret)
    return True


def exposure_report(
    *, secret: str, url: str = "", source: str = "", reporter: ExposureReporter | None = None
) -> Outcome:
    """One reported secret: refused without a query when it cannot be ours, else looked up by digest and, when it
    matches, recorded (token_exposure_record)."""
    if not may_be_ours(secret):
        return Outcome.INVALID
    token = token_by_secret(secret=secret)
    if token is None:
        return Outcome.UNMATCHED
    token_exposure_record(token=token, url=url, source=source, reporter=reporter)
    return Outcome.MATCHED


@transaction.atomic
def token_exposure_record(
    *, token: Token, url: str = "", source: str = "", reporter: ExposureReporter | None = None, by=None
) -> TokenExposure:
    """Mark `token` exposed at `url`. The first report of a (token, url) records it with an audit event and, for a
    token that still works, applies the policy (revoke, or flag only) and tells its contacts (`token_exposed`); a
    repeat only counts it (count, last_seen)."""
    url, source = url[:URL_MAX_LENGTH], source[:SOURCE_MAX_LENGTH]
    token = Token.objects.select_for_update().select_related("client").get(pk=token.pk)
    now = timezone.now()
    exposure, created = TokenExposure.objects.get_or_create(
        token=token,
        url=url,
        defaults={
            "source": source,
            "reporter": reporter,
            "reported_by": by,
            "first_seen": now,
            "last_seen": now,
        },
    )
    if not created:
        TokenExposure.objects.filter(pk=exposure.pk).update(count=F("count") + 1, last_seen=now)
        return exposure
    TokenEvent.objects.create(
        token=token,
        kind=TokenEvent.Kind.EXPOSED,
        actor=by,
        data={"url": url, "source": source, "reporter": reporter.name if reporter else ""},
    )
    if not token.is_usable(now):
        return exposure  # expired or already revoked: nothing left to contain
    revoked = policy() == POLICY_REVOKE
    if revoked:
        token = token_revoke(token=token, by=by, reason=EXPOSED_REASON)
    signals.token_exposed.send(sender=Token, token=token, exposure=exposure, revoked=revoked)
    return exposure
