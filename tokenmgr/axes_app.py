"""django-axes' app, its login-failure signal narrowed to password logins (tokenmgr.login_throttle)."""

from axes.apps import AppConfig


class AxesConfig(AppConfig):
    def ready(self):
        super().ready()
        from axes.signals import handle_user_login_failed
        from django.contrib.auth.signals import user_login_failed

        from .login_throttle import password_login_failed

        user_login_failed.disconnect(handle_user_login_failed)
        user_login_failed.connect(password_login_failed, dispatch_uid="tokenmgr.login_throttle")
