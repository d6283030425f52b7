"""Token secrets: a recognisable prefix plus 256 random bits; only a display prefix and an HMAC digest are stored."""

import hashlib
import hmac
import secrets

from django.conf import settings

DISPLAY_PREFIX_LENGTH = 12  # "tkm_" + 8 characters: enough to tell tokens apart, useless to an attacker.


def generate_secret() -> str:
    return settings.TOKEN_SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hmac.new(settings.TOKEN_DIGEST_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]


def looks_like_full_secret(term: str) -> bool:
    """A whole secret of this application rather than its display prefix: it must never travel in a URL."""
    return term.startswith(settings.TOKEN_SECRET_PREFIX) and len(term) > DISPLAY_PREFIX_LENGTH


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
