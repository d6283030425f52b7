"""Small rules shared by every HTML view that signs people in or carries a one-time link."""

from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request, candidate: str | None) -> str:
    """A local URL to go to afterwards ('' when missing or pointing elsewhere; https only on a secure request)."""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def private(response):
    """A page whose URL or body carries a one-time token: never cached, never in a Referer sent to another site.

    Not "no-referrer": Chromium then sends `Origin: null` with the confirmation POST, which Django's CSRF check
    rejects.
    """
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "same-origin"
    return response
