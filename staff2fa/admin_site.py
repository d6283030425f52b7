"""The admin site with the staff second factor (STAFF_2FA=required): password, then a TOTP or a recovery code.

A staff account whose session has not passed its second factor is not given the admin (`has_permission` is false,
so every admin view sends it to the login page); the login page sends it on to the code page, or to the
enrolment page when it has no confirmed authenticator yet. The password step is Django's own LoginView
(`authenticate(request=...)`), so login throttling hooks on it as on any Django login.
"""

import logging
from base64 import b32encode
from urllib.parse import urlencode

import segno
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import services

log = logging.getLogger(__name__)

RECOVERY_CODES_SESSION_KEY = "staff2fa_recovery_codes"


def second_factor_required() -> bool:
    return settings.STAFF_2FA == "required"


def is_verified(user) -> bool:
    """Whether this session's user passed a second factor (attribute set by django_otp's OTPMiddleware)."""
    check = getattr(user, "is_verified", None)
    return bool(check and check())


def awaits_second_factor(request: HttpRequest) -> bool:
    """An active staff member, logged in with their password, who has not given their second factor yet."""
    user = request.user
    return (
        second_factor_required()
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and not is_verified(user)
    )


def _normalized_code(raw: str) -> str:
    """Codes as typed: spaces and dashes dropped; recovery codes are lower case."""
    return "".join(raw.split()).replace("-", "").lower()


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false", "size": 12}
        ),
    )

    def clean_code(self) -> str:
        code = _normalized_code(self.cleaned_data["code"])
        if not code:
            raise forms.ValidationError(_("Saisissez un code."))
        return code


class StaffAdminSite(admin.AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return not second_factor_required() or is_verified(request.user)

    # --- URLs --------------------------------------------------------------------------------------------------
    def get_urls(self):
        own = [
            path("second-factor/", self._step(self.verify_view), name="staff2fa_verify"),
            path("second-factor/enrol/", self._step(self.enrol_view), name="staff2fa_enrol"),
            path(
                "second-factor/recovery-codes/", self._step(self.recovery_codes_view), name="staff2fa_codes"
            ),
            path("second-factor/logout/", self._step(self.logout), name="staff2fa_logout"),
        ]
        return own + super().get_urls()

    def _step(self, view):
        """Views of the second-factor step: open to a staff member between password and code (not admin_view)."""

        def inner(request, *args, **kwargs):
            request.current_app = self.name
            if not second_factor_required() or not (
                request.user.is_authenticated and request.user.is_active and request.user.is_staff
            ):
                return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
            return view(request, *args, **kwargs)

        return never_cache(csrf_protect(inner))

    # --- Login: password first (Django's LoginView), then the second factor ------------------------------------
    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if awaits_second_factor(request):
            return self._to_second_factor(request)
        response = super().login(request, extra_context)
        if request.method == "POST" and awaits_second_factor(request):
            return self._to_second_factor(request)
        return response

    def _next_url(self, request: HttpRequest) -> str:
        target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
        if target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return target
        return reverse("admin:index", current_app=self.name)

    def _step_url(self, request: HttpRequest, name: str) -> str:
        return f"{reverse(name, current_app=self.name)}?{urlencode({REDIRECT_FIELD_NAME: self._next_url(request)})}"

    def _to_second_factor(self, request: HttpRequest) -> HttpResponse:
        enrolled = TOTPDevice.objects.filter(user=request.user, confirmed=True).exists()
        return HttpResponseRedirect(
            self._step_url(request, "admin:staff2fa_verify" if enrolled else "admin:staff2fa_enrol")
        )

    def _render(self, request: HttpRequest, template: str, title: str, **context) -> TemplateResponse:
        return TemplateResponse(
            request,
            template,
            {
                **self.each_context(request),
                "title": title,
                "subtitle": None,
                "next": self._next_url(request),
                "logout_url": reverse("admin:staff2fa_logout", current_app=self.name),
                **context,
            },
        )

    # --- Steps -------------------------------------------------------------------------------------------------
    @method_decorator(sensitive_post_parameters("code"))
    def verify_view(self, request: HttpRequest) -> HttpResponse:
        """Second factor of an enrolled staff member: a code of their authenticator, or one recovery code."""
        if is_verified(request.user):
            return HttpResponseRedirect(self._next_url(request))
        if not TOTPDevice.objects.filter(user=request.user, confirmed=True).exists():
            return HttpResponseRedirect(self._step_url(request, "admin:staff2fa_enrol"))
        form = CodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            device = match_token(request.user, form.cleaned_data["code"])
            if device is not None:
                otp_login(request, device)
                if isinstance(device, StaticDevice):
                    left = device.token_set.count()
                    log.warning("staff recovery code used: user id=%s, %s left", request.user.pk, left)
                    messages.warning(
                        request,
                        ngettext(
                            "Code de secours utilisé : il vous en reste %(count)d.",
                            "Code de secours utilisé : il vous en reste %(count)d.",
                            left,
                        )
                        % {"count": left},
                    )
                return HttpResponseRedirect(self._next_url(request))
            form.add_error(
                "code",
                _(
                    "Code refusé. Vérifiez le code de votre application (ou réessayez dans quelques secondes)."
                ),
            )
        return self._render(request, "admin/staff2fa/verify.html", _("Second facteur"), form=form)

    @method_decorator(sensitive_post_parameters("code"))
    def enrol_view(self, request: HttpRequest) -> HttpResponse:
        """First login of a staff member: show a new authenticator secret (QR code and text), confirmed by a code."""
        if TOTPDevice.objects.filter(user=request.user, confirmed=True).exists():
            return HttpResponseRedirect(self._step_url(request, "admin:staff2fa_verify"))
        device = services.totp_enrolment_start(user=request.user)
        form = CodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            codes = services.totp_enrolment_confirm(device=device, code=form.cleaned_data["code"])
            if codes is not None:
                device.refresh_from_db()
                otp_login(request, device)
                request.session[RECOVERY_CODES_SESSION_KEY] = codes
                return HttpResponseRedirect(self._step_url(request, "admin:staff2fa_codes"))
            form.add_error(
                "code", _("Code refusé. Vérifiez l'heure de votre téléphone et saisissez le code affiché.")
            )
        secret = b32encode(device.bin_key).decode()
        qr_svg = segno.make(device.config_url, error="m").svg_inline(scale=5, omitsize=False)
        return self._render(
            request,
            "admin/staff2fa/enrol.html",
            _("Activer le second facteur"),
            form=form,
            qr_svg=qr_svg,
            secret=secret,
            secret_groups=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        )

    def recovery_codes_view(self, request: HttpRequest) -> HttpResponse:
        """The recovery codes just issued, shown once (they are only in this session until this page is seen)."""
        codes = request.session.pop(RECOVERY_CODES_SESSION_KEY, None)
        if not codes or not is_verified(request.user):
            return HttpResponseRedirect(self._next_url(request))
        return self._render(request, "admin/staff2fa/recovery_codes.html", _("Codes de secours"), codes=codes)


@admin.action(description=_("Réinitialiser le second facteur (nouvel enrôlement)"), permissions=["change"])
def reset_second_factor(modeladmin, request: HttpRequest, queryset) -> None:
    """Superusers only: forget the selected members' authenticators and recovery codes (audited)."""
    if not request.user.is_superuser:
        modeladmin.message_user(
            request, _("Seul un super-utilisateur peut réinitialiser un second facteur."), messages.ERROR
        )
        return
    users = list(queryset)
    for user in users:
        services.second_factor_reset(user=user, by=request.user)
    modeladmin.message_user(
        request,
        ngettext(
            "Second facteur réinitialisé pour %(count)d compte : il devra enrôler une nouvelle application.",
            "Second facteur réinitialisé pour %(count)d comptes : ils devront enrôler une nouvelle application.",
            len(users),
        )
        % {"count": len(users)},
        messages.SUCCESS,
    )
