import pytest

from accounts.identity import InvalidEmail, normalize_email

VICTIM = "victim@prestataire.com"


def test_ascii_case_folds_to_one_address():
    assert normalize_email("  Victim@PRESTATAIRE.Com ") == VICTIM


@pytest.mark.parametrize(
    "look_alike",
    [
        "victim@prestata\u0131re.com",  # Turkish dotless i
        "victim@prest\u0430taire.com",  # Cyrillic a
        "vict\u0131m@prestataire.com",  # dotless i in the local part
    ],
)
def test_look_alikes_never_match(look_alike):
    try:
        normalized = normalize_email(look_alike)
    except InvalidEmail:
        return
    assert normalized != VICTIM
    assert normalized.isascii() or "@" in normalized


def test_non_ascii_domain_is_stored_in_idna_form():
    assert normalize_email("contact@Stra\u00dfe.de") == "contact@xn--strae-oqa.de"
    assert normalize_email("contact@strasse.de") != normalize_email("contact@stra\u00dfe.de")


def test_fullwidth_domain_is_refused_not_mapped():
    with pytest.raises(InvalidEmail):
        normalize_email("victim@\uff50restataire.com")


@pytest.mark.parametrize("bad", ["", "no-at-sign", "@example.org", "someone@", "a@b@c"])
def test_invalid_addresses_raise(bad):
    with pytest.raises(InvalidEmail):
        normalize_email(bad)
