"""Recent authentication ("sudo mode"): the session's mark and the guard of sensitive views.

A session remembers when its user last proved who they are strongly: a password entered (portal or admin sign-in,
or the re-authentication page) or a login link emailed on request (portal.accounts.login_link, or the
re-authentication link of portal.reauth). A reminder email's magic link (notifications.magic_links) never counts:
such a link may have been forwarded or may have waited for days in a mailbox.

`recent_auth_required` guards a view: past `settings.REAUTH_MAX_AGE_SECONDS` since that proof, the user is sent to
/reauth/?next=<where to come back> (portal.reauth). A POST that needed re-authentication is never replayed: the user
comes back to the page holding its form.
"""

import time
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, user_logged_in
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

SESSION_KEY = "reauth_at"  # epoch seconds of the last strong authentication of this session
# Backends that checked a password before the login (sesame's logs in from a link: see `_on_login`).
PASSWORD_BACKENDS = frozenset({"django.contrib.auth.backends.ModelBackend"})


# ---------------------------------------------------------------------------------------------------------------
# The session's mark
# ---------------------------------------------------------------------------------------------------------------
def max_age() -> int:
    return settings.REAUTH_MAX_AGE_SECONDS


def mark(request) -> None:
    """Record that the session's user has just authenticated strongly."""
    request.session[SESSION_KEY] = int(time.time())


def is_recent(request) -> bool:
    at = request.session.get(SESSION_KEY)
    if not isinstance(at, int) or not request.user.is_authenticated:
        return False
    age = time.time() - at
    return -60 <= age <= max_age()  # a mark from the future (clock step) is not trusted beyond a minute


@receiver(user_logged_in, dispatch_uid="tokenmgr.reauth.on_login")
def _on_login(sender, request, user, **kwargs):
    """A password login is a strong authentication; a login by link is one only where its view says so (`mark`)."""
    if request is None or not hasattr(request, "session"):
        return
    if request.session.get(BACKEND_SESSION_KEY) in PASSWORD_BACKENDS:
        mark(request)
    else:
        request.session.pop(SESSION_KEY, None)


# ---------------------------------------------------------------------------------------------------------------
# The guard
# ---------------------------------------------------------------------------------------------------------------
def reauth_redirect(request, *, next_url: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(f"{reverse('reauth')}?{urlencode({'next': next_url})}")


def recent_auth_required(view=None, *, when=None, return_to: str | None = None):
    """Decorate a view: without a strong authentication within REAUTH_MAX_AGE_SECONDS, go and re-authenticate.

    `when(request)`: only those requests need it (default: all of them). `return_to`: the URL name (reversed with the
    view's keyword arguments) of the page holding the form of a POST-only view; a GET comes back to itself, a POST
    to `return_to` or else to its own path shown by GET (never replayed).
    """

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if when is not None and not when(request):
                return view(request, *args, **kwargs)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if is_recent(request):
                return view(request, *args, **kwargs)
            if request.method in ("GET", "HEAD"):
                next_url = request.get_full_path()
            else:
                next_url = reverse(return_to, kwargs=kwargs) if return_to else request.path
                messages.info(
                    request,
                    _("Pour votre sécurité, confirmez votre identité, puis recommencez votre action."),
                )
            return reauth_redirect(request, next_url=next_url)

        return wrapper

    return decorator if view is None else decorator(view)
