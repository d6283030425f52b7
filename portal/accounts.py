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
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from tokenmgr import ratelimit, reauth
from tokenmgr.pages import private, safe_next
from tokens.forms import SignupForm
from tokens.services import memberships_sync_from_proof

from . import services
from .forms import LoginForm, LoginLinkForm, ResetForm

# Requests per minute and client IP (429 beyond: it says nothing about any account). Failed passwords are throttled
# per (account, client IP) by django-axes (tokenmgr/login_throttle.py); this coarse ceiling on login POSTs only slows
# one address trying passwords on many accounts, and is high enough for a whole office behind one NAT address.
LOGIN_PER_IP = 60
MAIL_PER_IP = (
    services.ACCOUNT_EMAIL_REQUESTS_PER_IP
)  # login links, password resets (per address: in the task)


def too_many(request, template: str, context: dict, quota: ratelimit.Quota):
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
        quota = ratelimit.hit("login-ip", ratelimit.client_ip(request), LOGIN_PER_IP)
        if quota.exceeded:
            return too_many(request, self.template_name, self.get_context_data(form=self.get_form()), quota)
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
    """Have a login link emailed if an account exists (portal.services.account_email_request): the answer is the
    same whether or not it does, and whether or not the address reached its own limit."""
    next_url = safe_next(request, request.POST.get("next"))
    form = LoginLinkForm(request.POST)
    context = {"form": LoginForm(request), "link_form": form, "next": next_url, "link_tab": True}
    context["breadcrumbs"] = [(_("Connexion"), None)]
    if not form.is_valid():
        return render(request, "registration/login.html", context, status=400)
    quota = ratelimit.hit("login-link-ip", ratelimit.client_ip(request), MAIL_PER_IP)
    if quota.exceeded:
        return too_many(request, "registration/login.html", context, quota)
    services.account_email_request(
        kind=services.LOGIN_LINK_EMAIL, email=form.cleaned_data["email"], next_url=next_url
    )
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
    next_url = safe_next(request, source.get("next"))
    user = services.login_link_user(token=token, consume=request.method == "POST")
    if user is None:
        login_url = reverse("login") + (f"?{urlencode({'next': next_url})}" if next_url else "")
        return private(
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
        return private(
            render(
                request,
                "registration/login_link_confirm.html",
                {"token": token, "next": next_url, "login_email": user.email},
            )
        )
    login(request, user, backend="sesame.backends.ModelBackend")
    memberships_sync_from_proof(user=user)  # the link was mailed to user.email: the address is proved
    reauth.mark(request)  # a link asked for just now proves the mailbox as a password would
    return HttpResponseRedirect(next_url or settings.LOGIN_REDIRECT_URL, status=303)


# ---------------------------------------------------------------------------------------------------------------
# Password reset: Django's views, our form (accounts without a password too), sent by a task, SITE_URL in the email
# ---------------------------------------------------------------------------------------------------------------
@method_decorator(never_cache, name="dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    """Django's view, except that the email is sent by a Celery task (portal.services.account_email_request): the
    view never looks the address up, so its answer and timing are the same for every address."""

    form_class = ResetForm
    template_name = "registration/password_reset_form.html"
    success_url = reverse_lazy("password_reset_done")

    def post(self, request, *args, **kwargs):
        quota = ratelimit.hit("reset-ip", ratelimit.client_ip(request), MAIL_PER_IP)
        if quota.exceeded:
            return too_many(request, self.template_name, self.get_context_data(form=self.get_form()), quota)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        services.account_email_request(kind=services.PASSWORD_RESET_EMAIL, email=form.cleaned_data["email"])
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "registration/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        memberships_sync_from_proof(user=form.user)  # the reset link was mailed to user.email: address proved
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "registration/password_reset_complete.html"


def signup(request):
    """Sign-up for people arriving without a link: the address is verified by an emailed link
    (tokens.views.signup_confirm)."""
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next", "")) or reverse(
        "request_list"
    )
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            # Per client IP only here; per address, lookup and sending in a task (no account enumeration).
            quota = ratelimit.hit("signup-ip", ratelimit.client_ip(request), MAIL_PER_IP)
            if quota.exceeded:
                response = render(request, "registration/too_many.html", {"rate_limited": quota}, status=429)
                response["Retry-After"] = str(quota.reset)
                return response
            services.account_email_request(
                kind=services.SIGNUP_EMAIL, email=form.cleaned_data["email"], next_url=next_url
            )
            return render(request, "tokens/signup_sent.html", {"email": form.cleaned_data["email"]})
    else:
        form = SignupForm()
    return render(request, "tokens/signup.html", {"form": form, "next": next_url})
