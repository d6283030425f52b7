from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth import get_user_model


class StaffAdminConfig(AdminConfig):
    """django.contrib.admin whose default site (`admin.site`) asks staff for their second factor."""

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
