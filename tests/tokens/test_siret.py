import pytest
from django.core.exceptions import ValidationError

from tokens.siret import siret_error, validate_siret


@pytest.mark.parametrize(
    "siret",
    [
        "73282932000074",  # Luhn-valid
        "13002526500013",  # DINUM
        "21750001600019",  # Ville de Paris
        "35600000000048",  # La Poste head office (Luhn-valid too)
        "35600000009075",  # La Poste establishment: not Luhn, digits sum to a multiple of 5
        "35600000049837",
    ],
)
def test_valid_sirets(siret):
    assert siret_error(siret) is None
    validate_siret(siret)


@pytest.mark.parametrize(
    ("siret", "reason"),
    [
        ("", "14 chiffres"),
        ("7328293200007", "14 chiffres"),
        ("732829320000745", "14 chiffres"),
        ("7328293200007A", "14 chiffres"),
        ("73282932 00074", "14 chiffres"),
        ("７３２８２９３２０００７４", "14 chiffres"),  # full-width digits
        ("73282932000075", "Luhn"),
        ("35600000009076", "La Poste"),
    ],
)
def test_invalid_sirets(siret, reason):
    assert reason in siret_error(siret)
    with pytest.raises(ValidationError):
        validate_siret(siret)
