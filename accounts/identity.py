"""Who a person is: an email address, normalized once, compared only in that form.

Two addresses are the same person when their normalized forms are equal. Normalizing folds ASCII letters to lower
case and nothing else, and writes the domain in its IDNA ASCII form (``xn--…``) under IDNA 2008 without any
compatibility mapping: ``ı`` (dotless i), Cyrillic ``а`` or ``ß`` stay distinct (their domain is another ``xn--``
domain), and characters that IDNA 2008 disallows (fullwidth forms, for instance) make the address invalid rather
than quietly equal to an ASCII one. Never compare addresses with ``__iexact``, ``LOWER()`` or ``UPPER()``: those
fold non-ASCII letters too (PostgreSQL's ``UPPER('ı')`` is ``'I'``).
"""

import idna
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.translation import gettext_lazy as _

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_validate = EmailValidator()
MAX_LENGTH = 254


class InvalidEmail(ValueError):
    """The text is not an address that can be normalized."""


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only (str.lower() and casefold() also change non-ASCII letters)."""
    return text.translate(_ASCII_LOWER)


def normalize_email(address: str) -> str:
    """The one comparable form of an address; raises InvalidEmail when it is not a valid address."""
    text = (address or "").strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidEmail(_("Adresse e-mail invalide."))
    if domain.isascii():
        ascii_domain = ascii_lower(domain)
    else:
        try:
            ascii_domain = idna.encode(ascii_lower(domain), uts46=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidEmail(_("Nom de domaine invalide dans l'adresse e-mail.")) from exc
    normalized = f"{ascii_lower(local)}@{ascii_domain}"
    if len(normalized) > MAX_LENGTH:
        raise InvalidEmail(_("Adresse e-mail trop longue."))
    try:
        _validate(normalized)
    except ValidationError as exc:
        raise InvalidEmail(_("Adresse e-mail invalide.")) from exc
    return normalized


def normalize_email_or_none(address: str) -> str | None:
    try:
        return normalize_email(address)
    except InvalidEmail:
        return None
