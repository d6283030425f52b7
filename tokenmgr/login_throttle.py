"""Password-login throttling per (account, client IP) with django-axes, for the portal and /admin/ alike.

Settings (AXES_*) are in tokenmgr/settings.py. What this module adds to axes:

- the client IP is tokenmgr.client_ip's (AXES_CLIENT_IP_CALLABLE), so behind trusted proxies each client has its
  own counters and X-Forwarded-For sent by anyone else changes nothing;
- the account key is the normalized address (AXES_USERNAME_CALLABLE): "Ana@X.fr" and "ana@x.fr" share a counter;
- only password logins are throttled: login links (django-sesame) authenticate without a password, often with no
  request at all (``sesame.utils.get_user(token)``), and are neither counted nor refused;
- the lock-out page is the portal's, in French, with HTTP 429 and Retry-After (AXES_LOCKOUT_CALLABLE).
"""

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.shortcuts import render

from accounts.identity import ascii_lower, normalize_email_or_none
from tokenmgr.client_ip import UNKNOWN, client_ip
from tokenmgr.metrics import AXES_LOCKOUT, count_rate_limited


def client_ip_or_none(request) -> str | None:
    """tokenmgr.client_ip for axes, whose column is an IP field: None when the server gave no peer address."""
    ip = client_ip(request)
    return None if ip == UNKNOWN else ip


def password_login_failed(sender, credentials: dict, request=None, **kwargs):
    """Axes' failure handler, for password logins only (a bad login link is not a password guess)."""
    from axes.signals import handle_user_login_failed

    if is_password_login(request, credentials):
        handle_user_login_failed(sender, credentials=credentials, request=request, **kwargs)


def is_password_login(request, credentials: dict | None) -> bool:
    return request is not None and bool(credentials) and credentials.get("password") is not None


def username_key(request, credentials: dict | None) -> str | None:
    """The account a login attempt is counted against: its address in normalized form."""
    if credentials:
        username = credentials.get("username")
    else:
        username = request.POST.get("username") if request is not None else None
    if not username:
        return None
    username = str(username)[:254]
    return normalize_email_or_none(username) or ascii_lower(username.strip())


class PasswordLoginThrottleBackend(AxesStandaloneBackend):
    """Axes' gate before the real backends: refuses a locked-out (account, IP) pair; ignores other logins."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or password is None:  # a login link (sesame) or a call outside any request
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_response(request, original_response=None, credentials=None):
    """Too many failed passwords for this account from this client IP: HTTP 429, for the whole cool-off."""
    count_rate_limited(AXES_LOCKOUT)
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = render(
        request,
        "registration/locked_out.html",
        {"cooloff_minutes": seconds // 60, "failure_limit": settings.AXES_FAILURE_LIMIT},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response
