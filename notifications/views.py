"""Pages of the magic-link flow (rendered by notifications.magic_links.MagicLinkMiddleware)."""

from django.conf import settings
from django.shortcuts import render
from django.utils.http import urlencode


def _private(response):
    response["Cache-Control"] = "no-store"
    # The URL carries the login token: never send it to another site. Not "no-referrer": Chromium then sends
    # `Origin: null` with the confirmation POST, which Django's CSRF check rejects.
    response["Referrer-Policy"] = "same-origin"
    return response


def magic_link_confirm(request, *, token, user):
    """GET: asks for a click; nothing is written and nobody is logged in yet."""
    return _private(
        render(
            request,
            "notifications/magic_link_confirm.html",
            {"token": token, "login_email": user.get_username(), "action": request.get_full_path()},
        )
    )


def magic_link_invalid(request, *, next_url: str):
    login_url = f"{settings.LOGIN_URL}?{urlencode({'next': next_url})}"
    return _private(
        render(request, "notifications/magic_link_invalid.html", {"login_url": login_url}, status=403)
    )
