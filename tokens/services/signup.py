"""Accounts on the legacy route: sign-up with a verified email address."""

from django.db import transaction
from django.urls import reverse

from accounts.identity import InvalidEmail, normalize_email
from tokenmgr.errors import ApplicationError
from tokenmgr.mail import build_email

from ..selectors import (
    SIGNUP_MAX_AGE,
    SIGNUP_SALT,
)
from .emails import _absolute
from .memberships import memberships_sync_from_proof

# ------------------------------------------------------------------------------
# Accounts (legacy route: account creation with a verified email)
# ------------------------------------------------------------------------------


@transaction.atomic
def user_signup(*, email: str, password: str, first_name: str = "", last_name: str = ""):
    """Create the account of an address just proved by its signed link, then join the clients it is a contact of."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    try:
        email = normalize_email(email)
    except InvalidEmail as error:
        raise ApplicationError(str(error), code="invalid_email") from None
    if User.objects.filter(email=email).exists():
        raise ApplicationError(
            "Un compte existe déjà pour cette adresse ; connectez-vous.", code="user_exists"
        )
    user = User.objects.create_user(
        email=email, password=password, first_name=first_name, last_name=last_name
    )
    memberships_sync_from_proof(user=user)
    return user


@transaction.atomic
def user_account_complete(*, user, password: str, first_name: str = "", last_name: str = ""):
    """A user created by a magic link (no password yet) finishes their account."""
    user.set_password(password)
    user.first_name = first_name.strip() or user.first_name
    user.last_name = last_name.strip() or user.last_name
    user.save(update_fields=["password", "first_name", "last_name"])
    return user


def signup_link_send(*, email: str, next_url: str = "") -> None:
    """Email a signed link proving the address; the account is created when the link is followed."""
    from django.core import signing

    email = normalize_email(email)
    signed = signing.dumps({"email": email, "next": next_url}, salt=SIGNUP_SALT)
    context = {
        "email": email,
        "confirm_url": _absolute(reverse("signup_confirm", args=[signed])),
        "max_age_hours": SIGNUP_MAX_AGE // 3600,
    }
    build_email("emails/request_account_verify", context, to=[email]).send()
