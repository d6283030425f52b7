"""New secrets end with a checksum a scanner checks offline; the documented regular expression matches them."""

import re
from pathlib import Path

import pytest
from django.conf import settings

from tests.factories import issue_token
from tokens import credentials
from tokens.selectors import token_by_secret

DOC = Path(__file__).resolve().parents[2] / "docs" / "exposed-tokens.md"


def documented_pattern() -> str:
    """The regular expression given in docs/exposed-tokens.md (the first ```regex block)."""
    match = re.search(r"```regex\n(.+?)\n```", DOC.read_text(encoding="utf-8"))
    assert match, "docs/exposed-tokens.md has no ```regex block"
    return match.group(1).strip()


def test_documented_pattern_is_the_code_s():
    assert documented_pattern() == rf"\b{credentials.SECRET_PATTERN}\b"
    assert credentials.SECRET_PATTERN.startswith(settings.TOKEN_SECRET_PREFIX)


@pytest.mark.django_db
def test_issued_secrets_match_the_documented_pattern_and_their_checksum_validates():
    pattern = re.compile(documented_pattern())
    for _ in range(20):
        secret = credentials.generate_secret()
        assert pattern.fullmatch(secret) and len(secret) == 4 + 43 + 6
        assert credentials.secret_checksum_valid(secret)
    issued = issue_token()
    assert pattern.fullmatch(issued.secret) and credentials.secret_checksum_valid(issued.secret)
    # Found in surrounding text as a scanner would.
    text = f"export API_TOKEN={issued.secret}\n"
    assert pattern.findall(text) == [issued.secret]


def test_checksum_is_crc32_in_base62_of_the_rest():
    import zlib

    secret = credentials.generate_secret()
    body, check = secret[:-6], secret[-6:]
    value = 0
    for char in check:
        value = value * 62 + credentials.BASE62.index(char)
    assert value == zlib.crc32(body.encode())


def test_a_changed_character_breaks_the_checksum():
    secret = credentials.generate_secret()
    for position in (4, 20, len(secret) - 7, len(secret) - 1):
        char = secret[position]
        other = "A" if char != "A" else "B"
        assert not credentials.secret_checksum_valid(secret[:position] + other + secret[position + 1 :])
    assert not credentials.secret_checksum_valid(secret + "x")
    assert not credentials.secret_checksum_valid(secret[:-1])
    assert not credentials.secret_checksum_valid("")


@pytest.mark.django_db
def test_secrets_without_checksum_keep_working():
    legacy = "tkm_" + "a-b_" * 10 + "xyz"  # the shape issued before the checksum (URL-safe base64)
    imported = "0123-legacy-secret-from-elsewhere"
    for secret in (legacy, imported):
        issued = issue_token()
        from tokens.models import Token

        Token.objects.filter(pk=issued.token.pk).update(secret_digest=credentials.digest(secret))
        assert not credentials.secret_checksum_valid(secret)
        assert token_by_secret(secret=secret).pk == issued.token.pk


def test_log_redaction_catches_checksummed_secrets():
    from tokenmgr.logging import redact

    secret = credentials.generate_secret()
    assert secret not in redact(f'POST /api/exposed_tokens body=[{{"token": "{secret}"}}] {secret}')


@pytest.mark.django_db
def test_import_generates_checksummed_secrets(tmp_path):
    from io import StringIO

    from django.core.management import call_command

    from tests.factories import make_siret

    source = tmp_path / "tokens.csv"
    source.write_text(
        "siret,name,label,privileges,issued_at,origin,contacts,secret\n"
        f"{make_siret()},Commune,Portail,entreprises,2025-01-10,,a@example.org,\n",
        encoding="utf-8",
    )
    out = tmp_path / "secrets.csv"
    call_command("import_tokens", str(source), "--secrets-out", str(out), stdout=StringIO())
    line, secret = out.read_text(encoding="utf-8").strip().split(",")
    assert line == "2" and credentials.secret_checksum_valid(secret)
    assert token_by_secret(secret=secret) is not None
