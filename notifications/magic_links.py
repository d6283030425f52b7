"""Signed sign-in links in reminder emails (django-sesame), on the reminder's target pages.

A link is `<SITE_URL><route's action page>?sesame=<token>`: the sesame token names one user (the addressee of the
one message that holds it), is scoped to one token's public id (`token:<uuid>`), short-lived (SESAME_MAX_AGE) and
single-use (SESAME_ONE_TIME).

- GET with `?sesame=` never logs in nor writes anything (mail scanners pre-fetch links): it shows a confirmation page
  with a "Continuer" button, or the explanation page when the link is expired, reused, not for this page, or its user
  may no longer use it.
- POST (CSRF-checked: this runs in process_view, after CsrfViewMiddleware) consumes the link, checks again, makes the
  user a member of the token's client, logs them in and redirects (303) to the same path without the parameter.
- At both steps the user must still be active, neither staff nor superuser, and their address (normalized) one of
  the token's contacts (recipients.link_user_allowed, recipients.link_user_is_contact).
- A session opened by such a link is limited to that token's renewal: the token's own page, its route's action page,
  the pages of the access requests made for that token, and the sign-in and sign-out pages. Any other page
  redirects to the login page with a message asking for a full sign-in (password or login link), which drops the
  restriction. The session also remembers the token's client: `request.magic_link_client_id` tells views that list
  things to show only that client.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import login, user_logged_in
from django.contrib.auth.views import redirect_to_login
from django.dispatch import receiver
from django.http import HttpResponseRedirect
from django.utils.translation import gettext as _
from sesame import settings as sesame_settings
from sesame.utils import get_user

from tokens.models import AccessRequest, Client, Token
from tokens.services import memberships_sync_from_proof

from . import views
from .recipients import link_user_allowed, link_user_is_contact, magic_link_scope

SESSION_CLIENT_KEY = "magic_link_client_id"
SESSION_TOKEN_KEY = "magic_link_token"

# What a session opened by a reminder's link may open (URL names).
TOKEN_PAGES = frozenset({"portal_token", "token_renew", "token_legacy_renew"})  # `public_id`: that token only
REQUEST_PAGES = frozenset(  # `request_id`: a request made for that token only
    {"request_detail", "request_edit", "request_abandon", "request_message", "request_document"}
)
SIGN_IN_PAGES = frozenset(
    {
        "login",
        "login_link",
        "login_link_request",
        "login_link_sent",
        "password_reset",
        "password_reset_done",
        "password_reset_confirm",
        "password_reset_complete",
        "logout",
    }
)
# Authenticated by API tokens, never by the session: out of the restriction's reach (and always JSON).
API_PREFIXES = ("/api/", "/v2/")


@receiver(user_logged_in, dispatch_uid="notifications.magic_links.drop_scope")
def _drop_scope_on_login(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        request.session.pop(SESSION_CLIENT_KEY, None)
        request.session.pop(SESSION_TOKEN_KEY, None)


def clean_url(request) -> str:
    """The requested path and query string without the sesame parameter."""
    query = request.GET.copy()
    query.pop(sesame_settings.TOKEN_NAME, None)
    return request.path + (f"?{urlencode(query, doseq=True)}" if query else "")


def may_access(request, token: Token) -> bool:
    """Whether the current session may already open this token's pages (then a link need not be spent)."""
    user = request.user
    if not user.is_authenticated:
        return False
    if request.session.get(SESSION_CLIENT_KEY) is not None and request.session.get(SESSION_TOKEN_KEY) != str(
        token.public_id
    ):
        return False
    return Client.objects.accessible_to(user).filter(pk=token.client_id).exists()


def link_holder(user, token: Token) -> bool:
    """Whether this user may be signed in by a reminder link of this token, now."""
    return user is not None and link_user_allowed(user) and link_user_is_contact(user, token)


def restricted_page_allowed(request, view_kwargs) -> bool:
    """Whether a session opened by a reminder's link may open this page."""
    if request.path.startswith(API_PREFIXES):
        return True
    match = request.resolver_match
    name = match.view_name if match is not None else ""
    if name in SIGN_IN_PAGES:
        return True
    scoped = request.session.get(SESSION_TOKEN_KEY)
    if scoped is None:  # a session opened before links were bound to one token: sign-in pages only
        return False
    if name in TOKEN_PAGES:
        return str(view_kwargs.get("public_id")) == scoped
    if name in REQUEST_PAGES:
        return AccessRequest.objects.filter(
            public_id=view_kwargs.get("request_id"), token__public_id=scoped
        ).exists()
    return False


class MagicLinkMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        request.magic_link_client_id = (
            request.session.get(SESSION_CLIENT_KEY) if user is not None and user.is_authenticated else None
        )
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        sesame = request.GET.get(sesame_settings.TOKEN_NAME)
        if sesame is not None:
            return self.handle_link(request, sesame, view_kwargs.get("public_id"))
        if request.magic_link_client_id is None or restricted_page_allowed(request, view_kwargs):
            return None
        messages.info(
            request,
            _(
                "Le lien de votre rappel ne donne accès qu'au renouvellement de son jeton. Pour ouvrir cette "
                "page, connectez-vous avec votre mot de passe ou un lien de connexion."
            ),
        )
        return redirect_to_login(request.get_full_path())

    def handle_link(self, request, sesame: str, public_id):
        token = (
            Token.objects.select_related("client").filter(public_id=public_id).first()
            if public_id is not None
            else None
        )
        if token is None:
            return views.magic_link_invalid(request, next_url=clean_url(request))
        scope = magic_link_scope(token.public_id)
        if request.method == "POST":
            return self.sign_in(request, sesame, token, scope)
        if may_access(request, token):  # already signed in for this token: no need to spend the link
            return HttpResponseRedirect(clean_url(request))
        # Read only: validates, consumes nothing.
        user = get_user(sesame, scope=scope, update_last_login=False)
        if not link_holder(user, token):
            return views.magic_link_invalid(request, next_url=clean_url(request))
        return views.magic_link_confirm(request, token=token, user=user)

    def sign_in(self, request, sesame: str, token: Token, scope: str):
        user = get_user(sesame, scope=scope, update_last_login=True)  # single use: this spends the link
        if not link_holder(user, token):
            return views.magic_link_invalid(request, next_url=clean_url(request))
        memberships_sync_from_proof(user=user)
        login(request, user, backend="sesame.backends.ModelBackend")
        request.session[SESSION_CLIENT_KEY] = token.client_id
        request.session[SESSION_TOKEN_KEY] = str(token.public_id)
        return HttpResponseRedirect(clean_url(request), status=303)
