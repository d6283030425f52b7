from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Jetons"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from tokenmgr import search

        from .models import Token
        from .selectors import check_cache
        from .signals import token_revoked

        # Any change to a token empties this process's cache of token checks (the others' entries age out).
        for signal in (post_save, post_delete):
            signal.connect(check_cache.clear, sender=Token, dispatch_uid=f"token-check-cache-{signal}")
        m2m_changed.connect(
            check_cache.clear, sender=Token.privileges.through, dispatch_uid="token-check-cache-m2m"
        )
        token_revoked.connect(check_cache.clear, dispatch_uid="token-check-cache-revoked")
        search.connect()  # UNACCENT() on SQLite, as PostgreSQL's extension gives it
