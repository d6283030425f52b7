"""Token secrets: a recognisable prefix plus 256 random bits; only a display prefix and an HMAC digest are stored."""

import base64
import hmac
import secrets

from django.conf import settings

DISPLAY_PREFIX_LENGTH = 12  # "tkm_" + 8 characters: enough to tell tokens apart, useless to an attacker.


def _secret(raw: bytes) -> str:
    return settings.TOKEN_SECRET_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_secret() -> str:
    return _secret(secrets.token_bytes(32))


def new_series_key() -> bytes:
    """A random key for derived_secret, to be kept in memory only."""
    return secrets.token_bytes(32)


def derived_secret(series_key: bytes, number: int) -> str:
    """Secret number `number` of a series: same form as generate_secret, as unguessable as long as `series_key`
    stays secret. A bulk import rebuilds each new token's secret from its line number instead of keeping it."""
    return _secret(hmac.digest(series_key, str(number).encode(), "sha256"))


def digest(secret: str) -> str:
    return hmac.digest(settings.TOKEN_DIGEST_KEY.encode(), secret.encode(), "sha256").hex()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
