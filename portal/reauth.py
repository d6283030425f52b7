"""The re-authentication pages (sudo mode, tokenmgr.reauth): the password, or for an account without a usable
password a one-time link by email (django-sesame, scope "reauth", 15 minutes, single use). A GET on the link only shows
a confirmation button (mail scanners pre-fetch links); the POST spends it and marks the session.
"""

from django import forms
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from tokenmgr import ratelimit
from tokenmgr.mail import build_email
from tokenmgr.pages import private, safe_next
from tokenmgr.reauth import mark

from .accounts import too_many

LINK_SCOPE = "reauth"  # sesame scope: distinct from the login links' and the reminders' scopes
LINK_MAX_AGE = 15 * 60  # seconds

# Requests per minute, as the sign-in pages count them (portal.accounts).
PASSWORD_PER_IP = 30
PASSWORD_PER_USER = 10
LINK_PER_USER = 3


# ---------------------------------------------------------------------------------------------------------------
# The re-authentication page: password, or a link by email for an account without one
# ---------------------------------------------------------------------------------------------------------------
class ReauthForm(forms.Form):
    password = forms.CharField(
        label=gettext_lazy("Mot de passe"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )


def _crumbs():
    return [(_("Confirmer votre identité"), None)]


@sensitive_variables("password")
@sensitive_post_parameters("password")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def reauth(request):
    next_url = (
        safe_next(request, request.POST.get("next") or request.GET.get("next")) or settings.LOGIN_REDIRECT_URL
    )
    user = request.user
    with_password = user.has_usable_password()
    form = ReauthForm(request.POST if request.method == "POST" and with_password else None)
    template = "registration/reauth.html"
    context = {
        "form": form,
        "next": next_url,
        "with_password": with_password,
        "email": user.email,
        "max_age_minutes": LINK_MAX_AGE // 60,
        "breadcrumbs": _crumbs(),
    }
    if request.method == "GET":
        return private(render(request, template, context))
    if not with_password:
        quota = ratelimit.tightest(
            *ratelimit.hit_many(  # both counters in one round trip
                ("reauth-link-ip", ratelimit.client_ip(request), PASSWORD_PER_IP),
                ("reauth-link-user", str(user.pk), LINK_PER_USER),
            )
        )
        if quota.exceeded:
            return too_many(request, template, context, quota)
        link_send(user=user, next_url=next_url)
        return private(render(request, "registration/reauth_link_sent.html", context))
    quota = ratelimit.tightest(
        *ratelimit.hit_many(  # both counters in one round trip
            ("reauth-ip", ratelimit.client_ip(request), PASSWORD_PER_IP),
            ("reauth-user", str(user.pk), PASSWORD_PER_USER),
        )
    )
    if quota.exceeded:
        return too_many(request, template, context, quota)
    if form.is_valid():
        password = form.cleaned_data["password"]
        checked = authenticate(request, username=user.get_username(), password=password)
        if checked is not None and checked.pk == user.pk:
            mark(request)
            return HttpResponseRedirect(next_url, status=303)
        form.add_error("password", _("Mot de passe incorrect."))
    return private(render(request, template, context, status=400))


# ---------------------------------------------------------------------------------------------------------------
# The emailed link
# ---------------------------------------------------------------------------------------------------------------
def link_url(*, user, next_url: str = "") -> str:
    from sesame.utils import get_token

    query = {"token": get_token(user, scope=LINK_SCOPE)}  # `token=` is redacted from every log line
    if next_url:
        query["next"] = next_url
    return f"{settings.SITE_URL}{reverse('reauth_link')}?{urlencode(query)}"


def link_send(*, user, next_url: str = "") -> None:
    """Email `user` a one-time link that confirms their identity in their current session. Neither logged nor
    stored: only the email carries it."""
    address = user.email
    context = {
        "email": address,
        "link": link_url(user=user, next_url=next_url),
        "max_age_minutes": LINK_MAX_AGE // 60,
    }
    build_email("registration/reauth_link", context, to=[address]).send()


def link_user(*, token: str, consume: bool):
    """The user a re-authentication link is for, or None (expired, used, tampered, other scope, inactive).
    `consume=False` only reads; `consume=True` spends the link (SESAME_ONE_TIME)."""
    from sesame.utils import get_user

    if not token:
        return None
    return get_user(token, scope=LINK_SCOPE, max_age=LINK_MAX_AGE, update_last_login=consume)


def _link_invalid(request, next_url: str):
    reauth_url = f"{reverse('reauth')}?{urlencode({'next': next_url})}"
    return private(
        render(
            request,
            "registration/reauth_link_invalid.html",
            {"reauth_url": reauth_url, "breadcrumbs": _crumbs()},
            status=403,
        )
    )


@sensitive_variables("token")
@sensitive_post_parameters("token")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def reauth_link(request):
    """GET: confirmation page, nothing written. POST: spends the link and marks the session."""
    source = request.POST if request.method == "POST" else request.GET
    token = source.get("token", "")
    next_url = safe_next(request, source.get("next")) or settings.LOGIN_REDIRECT_URL
    user = link_user(token=token, consume=False)
    if user is None or user.pk != request.user.pk:
        return _link_invalid(request, next_url)
    if request.method == "GET":
        return private(
            render(
                request,
                "registration/reauth_link_confirm.html",
                {
                    "token": token,
                    "next": next_url,
                    "email": user.email,
                    "breadcrumbs": _crumbs(),
                },
            )
        )
    if link_user(token=token, consume=True) is None:  # spent by a concurrent request in between
        return _link_invalid(request, next_url)
    mark(request)
    return HttpResponseRedirect(next_url, status=303)
