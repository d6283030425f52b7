"""Filters that the access-request queue borrows from the reminders (registered in tokens' admin)."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from .pending import requests_near_deadline


class NearDeadlineFilter(admin.SimpleListFilter):
    """ "Échéance proche": undecided requests whose token reached the last reminder threshold."""

    title = _("échéance proche")
    parameter_name = "echeance"

    def lookups(self, request, model_admin):
        return [("proche", _("jeton au dernier rappel, demande non décidée"))]

    def queryset(self, request, queryset):
        if self.value() == "proche":
            return requests_near_deadline(queryset)
        return queryset
