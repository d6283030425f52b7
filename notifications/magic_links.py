"""Signed login links in reminder emails (django-sesame), on the reminder's target pages.

A link is `<SITE_URL><token page>?sesame=<token>`, the sesame token being scoped to that token's public id
(`token:<uuid>`), short-lived (SESAME_MAX_AGE) and single-use (SESAME_ONE_TIME).

- GET with `?sesame=` never logs in nor writes anything (mail scanners pre-fetch links): it shows a confirmation page
  with a "Continuer" button, or the explanation page when the link is expired, reused or not for this page.
- POST (CSRF-checked: this runs in process_view, after CsrfViewMiddleware) consumes the link, checks that the user's
  address is still a contact of the token, makes them a member of the token's client, logs them in and redirects
  (303) to the same path without the parameter.
- "Signed in for that client only": the session remembers the client (SESSION_CLIENT_KEY). On every request of such a
  session, a page naming a token (`public_id` URL argument) of another client is a 404, and `request.magic_link_client_id`
  tells views that list things to show only that client. Any other login (password…) drops the restriction.
"""

from urllib.parse import urlencode

from django.contrib.auth import login, user_logged_in
from django.dispatch import receiver
from django.http import Http404, HttpResponseRedirect
from sesame import settings as sesame_settings
from sesame.utils import get_user

from tokens.models import Client, Token
from tokens.services import memberships_sync_from_proof

from . import views
from .services import magic_link_scope

SESSION_CLIENT_KEY = "magic_link_client_id"


@receiver(user_logged_in, dispatch_uid="notifications.magic_links.drop_scope")
def _drop_scope_on_login(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        request.session.pop(SESSION_CLIENT_KEY, None)


def clean_url(request) -> str:
    """The requested path and query string without the sesame parameter."""
    query = request.GET.copy()
    query.pop(sesame_settings.TOKEN_NAME, None)
    return request.path + (f"?{urlencode(query, doseq=True)}" if query else "")


def may_access(request, token: Token) -> bool:
    user = request.user
    if not user.is_authenticated:
        return False
    scoped = request.session.get(SESSION_CLIENT_KEY)
    if scoped is not None and scoped != token.client_id:
        return False
    return Client.objects.accessible_to(user).filter(pk=token.client_id).exists()


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
        public_id = view_kwargs.get("public_id")
        sesame = request.GET.get(sesame_settings.TOKEN_NAME)
        if sesame is not None:
            return self.handle_link(request, sesame, public_id)
        scoped = request.magic_link_client_id
        if (
            scoped is not None
            and public_id is not None
            and not Token.objects.filter(public_id=public_id, client_id=scoped).exists()
        ):
            raise Http404
        return None

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
        if may_access(request, token):  # already signed in for this client: no need to spend the link
            return HttpResponseRedirect(clean_url(request))
        user = get_user(
            sesame, scope=scope, update_last_login=False
        )  # read only: validates, consumes nothing
        if user is None or not self.is_contact(user, token):
            return views.magic_link_invalid(request, next_url=clean_url(request))
        return views.magic_link_confirm(request, token=token, user=user)

    @staticmethod
    def is_contact(user, token: Token) -> bool:
        return token.contacts.filter(email=user.email).exists()

    def sign_in(self, request, sesame: str, token: Token, scope: str):
        user = get_user(sesame, scope=scope, update_last_login=True)  # single use: this spends the link
        if user is None or not self.is_contact(user, token):
            return views.magic_link_invalid(request, next_url=clean_url(request))
        memberships_sync_from_proof(user=user)
        login(request, user, backend="sesame.backends.ModelBackend")
        request.session[SESSION_CLIENT_KEY] = token.client_id
        return HttpResponseRedirect(clean_url(request), status=303)
