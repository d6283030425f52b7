from django.apps import apps
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth import get_user_model
from django.db import models


class StaffAdminConfig(AdminConfig):
    """django.contrib.admin whose default site (`admin.site`) asks staff for their second factor, and whose forms
    read URLs as https."""

    default = False
    default_site = "staff2fa.admin_site.StaffAdminSite"

    def ready(self) -> None:
        super().ready()  # autodiscover: every app's admin module has registered its models on admin.site
        from django_otp.plugins.otp_static.models import StaticDevice
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from .admin_site import reset_second_factor

        # Device admins would show or let edit the secrets; staff devices are only ever reset (action below).
        for model in (TOTPDevice, StaticDevice):
            if admin.site.is_registered(model):
                admin.site.unregister(model)
        # The reset action of the staff second factor, on the user list (whichever ModelAdmin serves the user model).
        user_model = get_user_model()
        if admin.site.is_registered(user_model):
            user_admin = admin.site.get_model_admin(user_model)
            user_admin.actions = [*(user_admin.actions or []), reset_second_factor]
        # Every admin form (third-party ones too) reads a URL typed without a scheme as https, as the integrators'
        # forms do and as Django 6 will by default. A ModelAdmin is built once, its inlines at each request.
        for model in apps.get_models():
            if admin.site.is_registered(model):
                model_admin = admin.site.get_model_admin(model)
                model_admin.formfield_overrides = _urls_as_https(model_admin.formfield_overrides)
                for inline in model_admin.inlines:
                    inline.formfield_overrides = _urls_as_https(inline.formfield_overrides)


def _urls_as_https(overrides: dict) -> dict:
    return {**overrides, models.URLField: {**overrides.get(models.URLField, {}), "assume_scheme": "https"}}
