"""SIRET validation: 14 digits, Luhn key, with La Poste's exception."""

from django.core.exceptions import ValidationError

LA_POSTE_SIREN = "356000000"


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def siret_error(value: str) -> str | None:
    """The reason `value` is not a valid SIRET, or None."""
    if not isinstance(value, str) or len(value) != 14 or not value.isascii() or not value.isdigit():
        return "un SIRET comporte exactement 14 chiffres"
    if value.startswith(LA_POSTE_SIREN):
        # La Poste's establishments do not follow Luhn: their digits sum to a multiple of 5 (INSEE rule).
        if luhn_ok(value) or sum(int(c) for c in value) % 5 == 0:
            return None
        return "clé de contrôle invalide (règle La Poste)"
    if not luhn_ok(value):
        return "clé de contrôle (Luhn) invalide"
    return None


def validate_siret(value: str) -> None:
    error = siret_error(value)
    if error:
        raise ValidationError(f"SIRET {value!r} invalide : {error}.", code="invalid_siret")
