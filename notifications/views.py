"""Pages of the magic-link flow (rendered by notifications.magic_links.MagicLinkMiddleware)."""

from django.conf import settings
from django.shortcuts import render
from django.utils.http import urlencode

from tokenmgr.pages import private


def magic_link_confirm(request, *, token, user):
    """GET: asks for a click; nothing is written and nobody is logged in yet."""
    return private(
        render(
            request,
            "notifications/magic_link_confirm.html",
            {"token": token, "login_email": user.email, "action": request.get_full_path()},
        )
    )


def magic_link_invalid(request, *, next_url: str):
    login_url = f"{settings.LOGIN_URL}?{urlencode({'next': next_url})}"
    return private(
        render(request, "notifications/magic_link_invalid.html", {"login_url": login_url}, status=403)
    )
