"""Token secrets: a recognisable prefix, 256 random bits and a checksum; only a display prefix and an HMAC digest
are stored.

A secret issued now reads `tkm_` + 43 base62 characters (the random part) + 6 base62 characters: the CRC32 of
everything before them, so that a secret scanner tells a real secret from noise offline (SECRET_PATTERN, documented
in docs/exposed-tokens.md). Secrets issued before the checksum existed, and imported ones, have other shapes: they
keep working, since every lookup is by digest whatever the shape.
"""

import hmac
import re
import secrets
import zlib

from django.conf import settings

# The longest secret any surface accepts (API, admin and portal look-ups, imports): longer input is refused unread.
SECRET_MAX_LENGTH = 4096
DISPLAY_PREFIX_LENGTH = 12  # "tkm_" + 8 characters: enough to tell tokens apart, useless to an attacker.

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 43  # 62**43 > 2**256: 256 random bits fit
CHECKSUM_LENGTH = 6  # 62**6 > 2**32: a CRC32 always fits
# The shape of a secret with a checksum (the prefix is settings.TOKEN_SECRET_PREFIX, "tkm_").
SECRET_PATTERN = r"tkm_[0-9A-Za-z]{43}[0-9A-Za-z]{6}"
_SHAPE = re.compile(SECRET_PATTERN)


_PAIRS = [a + b for a in BASE62 for b in BASE62]  # two digits per division: half the big-number divisions


def base62(number: int, width: int) -> str:
    """`number` in base62 (BASE62's digits), left-padded with "0" to `width` characters."""
    pairs = []
    while number:
        number, rest = divmod(number, 3844)  # 62²
        pairs.append(_PAIRS[rest])
    return "".join(reversed(pairs)).lstrip("0").rjust(width, "0")


def checksum(text: str) -> str:
    """The 6-character checksum of `text`: its CRC32 (of the UTF-8 bytes) in base62."""
    return base62(zlib.crc32(text.encode()), CHECKSUM_LENGTH)


def secret_from_bytes(random_bytes: bytes) -> str:
    """The secret made of 32 random bytes: prefix, their base62 form, checksum."""
    body = settings.TOKEN_SECRET_PREFIX + base62(int.from_bytes(random_bytes, "big"), RANDOM_LENGTH)
    return body + checksum(body)


def generate_secret() -> str:
    return secret_from_bytes(secrets.token_bytes(32))


def has_checksum_shape(secret: str) -> bool:
    """Whether `secret` has the shape of a secret with a checksum (the checksum itself not checked)."""
    return _SHAPE.fullmatch(secret) is not None


def secret_checksum_valid(secret: str) -> bool:
    """Whether `secret` has the shape of a secret with a checksum and its checksum is right (no database)."""
    if not has_checksum_shape(secret):
        return False
    body, given = secret[:-CHECKSUM_LENGTH], secret[-CHECKSUM_LENGTH:]
    return hmac.compare_digest(checksum(body), given)


def new_series_key() -> bytes:
    """A random key for derived_secret, to be kept in memory only."""
    return secrets.token_bytes(32)


def derived_secret(series_key: bytes, number: int) -> str:
    """Secret number `number` of a series: same form as generate_secret, as unguessable as long as `series_key`
    stays secret. A bulk import rebuilds each new token's secret from its line number instead of keeping it."""
    return secret_from_bytes(hmac.digest(series_key, str(number).encode(), "sha256"))


def digest(secret: str) -> str:
    return hmac.digest(settings.TOKEN_DIGEST_KEY.encode(), secret.encode(), "sha256").hex()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]


def looks_like_full_secret(term: str) -> bool:
    """A whole secret of this application rather than its display prefix: it must never travel in a URL."""
    return term.startswith(settings.TOKEN_SECRET_PREFIX) and len(term) > DISPLAY_PREFIX_LENGTH


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
