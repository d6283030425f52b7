"""Sign-in pages: password or emailed login link, logout, password reset (Django's views, DSFR templates).

Login links (django-sesame, scope "login", one hour, single use) follow the reminders' magic links
(notifications.magic_links): a GET only shows a confirmation button (mail scanners pre-fetch links) and the POST signs
in. The link's token travels as `?token=` (redacted from every log line) on /connexion/lien/, a path of its own: the
reminders' middleware handles `?sesame=` on token pages only.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from tokenmgr import ratelimit

from . import services
from .forms import LoginForm, LoginLinkForm, ResetForm

# Requests per minute. Per address: no mailbox flooding, no password guessing on one account.
LOGIN_PER_IP = 30
LOGIN_PER_USERNAME = 10
MAIL_PER_IP = 10
MAIL_PER_ADDRESS = 3


def _safe_next(request, candidate: str | None) -> str:
    """A local path to go to after sign-in ('' when missing or pointing elsewhere)."""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _private(response):
    """Pages carrying a login token: never cached, never in a Referer sent to another site."""
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "same-origin"
    return response


def _throttled(request, *quotas) -> ratelimit.Quota | None:
    quota = ratelimit.tightest(*quotas)
    return quota if quota.exceeded else None


def _too_many(request, template: str, context: dict, quota: ratelimit.Quota):
    context["rate_limited"] = quota
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(quota.reset)
    return response


# ---------------------------------------------------------------------------------------------------------------
# Login with a password (and the link form on the same page)
# ---------------------------------------------------------------------------------------------------------------
class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def dispatch(self, request, *args, **kwargs):
        # A session opened by a reminder's link (one client only) may sign in fully here.
        self.redirect_authenticated_user = getattr(request, "magic_link_client_id", None) is None
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("link_form", LoginLinkForm())
        context["breadcrumbs"] = [(_("Connexion"), None)]
        return context

    def post(self, request, *args, **kwargs):
        username = (request.POST.get("username") or "").strip().lower()[:254]
        quota = _throttled(
            request,
            *ratelimit.hit_many(  # both counters in one round trip
                ("login-ip", ratelimit.client_ip(request), LOGIN_PER_IP),
                ("login-user", username or "-", LOGIN_PER_USERNAME),
            ),
        )
        if quota is not None:
            return _too_many(request, self.template_name, self.get_context_data(form=self.get_form()), quota)
        return super().post(request, *args, **kwargs)


class LogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("login")

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, _("Vous êtes déconnecté(e)."))
        return response


# ---------------------------------------------------------------------------------------------------------------
# Login link
# ---------------------------------------------------------------------------------------------------------------
@never_cache
@require_POST
def login_link_request(request):
    """Email a login link if an account exists; the answer is the same either way (no account enumeration)."""
    next_url = _safe_next(request, request.POST.get("next"))
    form = LoginLinkForm(request.POST)
    context = {"form": LoginForm(request), "link_form": form, "next": next_url, "link_tab": True}
    context["breadcrumbs"] = [(_("Connexion"), None)]
    if not form.is_valid():
        return render(request, "registration/login.html", context, status=400)
    email = form.cleaned_data["email"].strip().lower()
    quota = _throttled(
        request,
        *ratelimit.hit_many(  # both counters in one round trip
            ("login-link-ip", ratelimit.client_ip(request), MAIL_PER_IP),
            ("login-link-address", email, MAIL_PER_ADDRESS),
        ),
    )
    if quota is not None:
        return _too_many(request, "registration/login.html", context, quota)
    services.login_link_send(email=email, next_url=next_url)
    return redirect(reverse("login_link_sent"))


@never_cache
def login_link_sent(request):
    return render(
        request,
        "registration/login_link_sent.html",
        {
            "max_age_minutes": services.LOGIN_LINK_MAX_AGE // 60,
            "breadcrumbs": [(_("Connexion"), reverse("login")), (_("Lien envoyé"), None)],
        },
    )


@sensitive_variables("token")
@sensitive_post_parameters("token")
@never_cache
@require_http_methods(["GET", "POST"])
def login_link(request):
    """GET: confirmation page, nothing written. POST: spends the link and signs in."""
    source = request.POST if request.method == "POST" else request.GET
    token = source.get("token", "")
    next_url = _safe_next(request, source.get("next"))
    user = services.login_link_user(token=token, consume=request.method == "POST")
    if user is None:
        login_url = reverse("login") + (f"?{urlencode({'next': next_url})}" if next_url else "")
        return _private(
            render(request, "registration/login_link_invalid.html", {"login_url": login_url}, status=403)
        )
    if request.method == "GET":
        # Already signed in as that user, fully (a session opened by a reminder's link signs in again, fully).
        if (
            request.user.is_authenticated
            and request.user.pk == user.pk
            and getattr(request, "magic_link_client_id", None) is None
        ):
            return HttpResponseRedirect(next_url or settings.LOGIN_REDIRECT_URL)
        return _private(
            render(
                request,
                "registration/login_link_confirm.html",
                {"token": token, "next": next_url, "login_email": user.email or user.username},
            )
        )
    login(request, user, backend="sesame.backends.ModelBackend")
    return HttpResponseRedirect(next_url or settings.LOGIN_REDIRECT_URL, status=303)


# ---------------------------------------------------------------------------------------------------------------
# Password reset: Django's views, our form (accounts without a password too), SITE_URL in the email, rate limit
# ---------------------------------------------------------------------------------------------------------------
@method_decorator(never_cache, name="dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    form_class = ResetForm
    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    html_email_template_name = "registration/password_reset_email.html"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def get_extra_email_context(self):
        return {"site_url": settings.SITE_URL}

    def post(self, request, *args, **kwargs):
        email = (request.POST.get("email") or "").strip().lower()[:254]
        quota = _throttled(
            request,
            *ratelimit.hit_many(  # both counters in one round trip
                ("reset-ip", ratelimit.client_ip(request), MAIL_PER_IP),
                ("reset-address", email or "-", MAIL_PER_ADDRESS),
            ),
        )
        if quota is not None:
            return _too_many(request, self.template_name, self.get_context_data(form=self.get_form()), quota)
        self.extra_email_context = self.get_extra_email_context()
        return super().post(request, *args, **kwargs)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"
