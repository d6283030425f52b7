"""Small rules shared by the HTML views: where to go next, one-time-link pages, how a refused request is shown."""

from django.contrib import messages
from django.utils.http import url_has_allowed_host_and_scheme

from .errors import ApplicationError


def report_error(request, error: ApplicationError, form=None) -> None:
    """The HTML pages' (admin included) mapping of an ApplicationError: an error of `form` when given (on the field
    at fault when the form has it), else a message shown on the next page."""
    if form is not None:
        form.add_error(error.field if error.field in form.fields else None, error.message)
    else:
        messages.error(request, error.message)


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
