"""Token secrets: a recognisable prefix plus 256 random bits; only a display prefix and an HMAC digest are stored."""

import hashlib
import hmac
import secrets

from django.conf import settings

# The longest secret any surface accepts (API, admin and portal look-ups, imports): longer input is refused unread.
SECRET_MAX_LENGTH = 4096
DISPLAY_PREFIX_LENGTH = 12  # "tkm_" + 8 characters: enough to tell tokens apart, useless to an attacker.


def generate_secret() -> str:
    return settings.TOKEN_SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hmac.new(settings.TOKEN_DIGEST_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
