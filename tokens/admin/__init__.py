"""The admins' working surface, by domain: registry (clients, members, contacts, privileges, endpoints), tokens
(issue, revoke, secrets, exports, audit), requests (the instructors' queue). Each module registers its ModelAdmins."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from . import registry, requests, tokens

__all__ = ["registry", "requests", "tokens"]

admin.site.site_header = _("tokenmgr — administration")
admin.site.site_title = _("tokenmgr")
admin.site.index_title = _("Registre des jetons et demandes d'accès")
