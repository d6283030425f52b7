"""Every write of the portal: one transaction each, with its audit event."""

import hashlib
import hmac
import logging
import secrets
from functools import partial

from django.db import transaction
from django.utils import timezone

from accounts.identity import normalize_email_or_none
from tokenmgr import ratelimit
from tokenmgr.mail import build_email
from tokens.models import Token
from tokens.services import token_revoke

from .models import CalendarFeed

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Revocation from the portal
# ---------------------------------------------------------------------------------------------------------------
@transaction.atomic
def token_revoke_by_holder(*, token: Token, by, reason: str) -> Token:
    """Revoke (tokens.services.token_revoke); the client's webhooks hear of it through notifications.receivers."""
    return token_revoke(token=token, by=by, reason=reason)


# ---------------------------------------------------------------------------------------------------------------
# Calendar feed
# ---------------------------------------------------------------------------------------------------------------
def calendar_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def calendar_feed_regenerate(*, user) -> str:
    """A new private ICS key for `user` (the previous address stops working). Returns the key, shown once."""
    key = secrets.token_urlsafe(32)
    CalendarFeed.objects.update_or_create(
        user=user,
        defaults={
            "key_digest": calendar_key_digest(key),
            "created_at": timezone.now(),
            "last_fetched_at": None,
        },
    )
    return key


@transaction.atomic
def calendar_feed_revoke(*, user) -> None:
    CalendarFeed.objects.filter(user=user).delete()


def calendar_feed_for_key(*, key: str) -> CalendarFeed | None:
    if not key or len(key) > 100:
        return None
    wanted = calendar_key_digest(key)
    feed = CalendarFeed.objects.filter(key_digest=wanted).select_related("user").first()
    if feed is None or not hmac.compare_digest(feed.key_digest, wanted) or not feed.user.is_active:
        return None
    return feed


# ---------------------------------------------------------------------------------------------------------------
# Login links ("recevoir un lien de connexion par e-mail")
# ---------------------------------------------------------------------------------------------------------------
LOGIN_LINK_SCOPE = "login"  # sesame scope: distinct from the reminders' per-token scopes (token:<uuid>)
LOGIN_LINK_MAX_AGE = 3600  # seconds; shorter than reminder links (SESAME_MAX_AGE), asked for on the spot


def login_link_users(*, email: str) -> list:
    """The active, non-staff account of an address (by its normalized form). Staff sign in by password: a link in
    an email must not open the admin."""
    return list(_accounts_of(email).filter(is_active=True, is_staff=False, is_superuser=False).order_by("pk"))


def login_link_url(*, user, next_url: str = "") -> str:
    """Absolute, single-use, short-lived link signing `user` in, then going to `next_url` (a local path)."""
    from django.conf import settings
    from django.urls import reverse
    from django.utils.http import urlencode
    from sesame.utils import get_token

    query = {"token": get_token(user, scope=LOGIN_LINK_SCOPE)}  # `token=` is redacted from every log line
    if next_url:
        query["next"] = next_url
    return f"{settings.SITE_URL}{reverse('login_link')}?{urlencode(query)}"


def login_link_send(*, email: str, next_url: str = "") -> int:
    """Email a login link to each account of `email`; returns how many were sent (never shown: no enumeration).
    The link is neither logged nor stored: only the email carries it."""
    sent = 0
    for user in login_link_users(email=email):
        address = user.email
        context = {
            "user": user,
            "email": address,
            "link": login_link_url(user=user, next_url=next_url),
            "max_age_minutes": LOGIN_LINK_MAX_AGE // 60,
        }
        build_email("registration/login_link", context, to=[address]).send()
        sent += 1
    return sent


def login_link_user(*, token: str, consume: bool):
    """The user a login link signs in, or None (expired, used, tampered, other scope, account disabled or staff).
    `consume=False` only reads (mail scanners pre-fetch links); `consume=True` spends the link (SESAME_ONE_TIME)."""
    from sesame.utils import get_user

    if not token:
        return None
    user = get_user(token, scope=LOGIN_LINK_SCOPE, max_age=LOGIN_LINK_MAX_AGE, update_last_login=consume)
    if user is None or user.is_staff or user.is_superuser:
        return None
    return user


# ---------------------------------------------------------------------------------------------------------------
# Account emails (login link, password reset, sign-up link): nobody learns which addresses have an account
# ---------------------------------------------------------------------------------------------------------------
# The view validates the form, applies its per-IP limit (a 429 there says nothing about the address), then only
# calls account_email_request: same answer, same work, whatever the address. The Celery task, later, counts the
# address against its limit, looks it up and sends, or silently does nothing.
LOGIN_LINK_EMAIL = "login_link"
PASSWORD_RESET_EMAIL = "password_reset"
SIGNUP_EMAIL = "signup"
ACCOUNT_EMAIL_KINDS = (LOGIN_LINK_EMAIL, PASSWORD_RESET_EMAIL, SIGNUP_EMAIL)
# Requests per minute and client IP on each form that sends one (429 beyond: that says nothing about addresses).
ACCOUNT_EMAIL_REQUESTS_PER_IP = 10
# Emails of any kind to one address per hour: beyond, requests are answered as usual and nothing is sent.
ACCOUNT_EMAILS_PER_ADDRESS = 5
ACCOUNT_EMAIL_WINDOW_SECONDS = 3600
PASSWORD_RESET_TEMPLATES = {
    "subject_template_name": "registration/password_reset_subject.txt",
    "email_template_name": "registration/password_reset_email.txt",
    "html_email_template_name": "registration/password_reset_email.html",
}


def account_email_request(*, kind: str, email: str, next_url: str = "") -> None:
    """Have the account email `kind` sent to `email`, if due, by a Celery task once the transaction commits.
    Does no lookup and reveals nothing; a broker failure is logged (without the address), never shown."""
    if kind not in ACCOUNT_EMAIL_KINDS:
        raise ValueError(f"unknown account email kind: {kind!r}")
    transaction.on_commit(partial(_enqueue_account_email, kind, email.strip(), next_url))


def _enqueue_account_email(kind: str, email: str, next_url: str) -> None:
    from .tasks import account_email_send as task

    try:
        task.delay(kind, email, next_url)
    except Exception:
        logger.exception("could not enqueue a %s email", kind)


def account_email_send(*, kind: str, email: str, next_url: str = "") -> int:
    """The task's work: per-address limit, lookup, sending. Returns how many emails went out (never shown)."""
    address = normalize_email_or_none(email)
    if address is None:
        return 0
    quota = ratelimit.hit_exact(
        "account-email-address",
        hashlib.sha256(address.encode()).hexdigest()[:32],  # no address in cache keys
        ACCOUNT_EMAILS_PER_ADDRESS,
        window=ACCOUNT_EMAIL_WINDOW_SECONDS,
    )
    if quota.exceeded:
        logger.info("%s email not sent: per-address limit reached", kind)
        return 0
    if kind == LOGIN_LINK_EMAIL:
        return login_link_send(email=email, next_url=next_url)
    if kind == PASSWORD_RESET_EMAIL:
        return password_reset_send(email=email)
    if kind == SIGNUP_EMAIL:
        return signup_email_send(email=email, next_url=next_url)
    raise ValueError(f"unknown account email kind: {kind!r}")


def _accounts_of(email: str):
    """The account of an address, compared in its normalized form only (accounts.identity)."""
    from django.contrib.auth import get_user_model

    address = normalize_email_or_none(email)
    users = get_user_model().objects
    return users.filter(email=address) if address is not None else users.none()


def password_reset_send(*, email: str) -> int:
    """Django's password-reset email (links under SITE_URL) to each active account of `email`."""
    from urllib.parse import urlsplit

    from django.conf import settings

    from .forms import ResetForm

    form = ResetForm({"email": email})
    if not form.is_valid():
        return 0
    count = len(list(form.get_users(form.cleaned_data["email"])))
    if count:
        site = urlsplit(settings.SITE_URL)
        form.save(
            domain_override=site.netloc,
            use_https=site.scheme == "https",
            extra_email_context={"site_url": settings.SITE_URL, "SERVICE_NAME": settings.SERVICE_NAME},
            **PASSWORD_RESET_TEMPLATES,
        )
    return count


def signup_email_send(*, email: str, next_url: str = "") -> int:
    """Sign-up: the verification link to a new address; an address that already has an account gets a login link
    instead (the sign-up link would only end in "this account exists")."""
    from tokens.services import signup_link_send

    if _accounts_of(email).exists():
        return login_link_send(email=email, next_url=next_url)
    signup_link_send(email=email, next_url=next_url)
    return 1
