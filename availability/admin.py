from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import Incident


class StateFilter(admin.SimpleListFilter):
    title = _("état")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("ongoing", _("en cours")), ("upcoming", _("à venir")), ("past", _("passé"))]

    def queryset(self, request, queryset):
        now = timezone.now()
        return {
            "ongoing": queryset.ongoing,
            "upcoming": queryset.upcoming,
            "past": queryset.past,
        }.get(self.value(), lambda now: queryset)(now)


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ["title", "starts_at", "ends_at", "planned", "state_label"]
    list_filter = [StateFilter, "planned", "endpoints"]
    search_fields = ["title", "description"]
    date_hierarchy = "starts_at"
    filter_horizontal = ["endpoints"]
    readonly_fields = ["created_at", "updated_at", "preview"]
    fieldsets = [
        (None, {"fields": ["title", "planned", "endpoints", ("starts_at", "ends_at")]}),
        (_("Description"), {"fields": ["description", "preview"]}),
        (_("Historique"), {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description=_("état"))
    def state_label(self, obj):
        return {"ongoing": _("en cours"), "upcoming": _("à venir"), "past": _("passé")}[obj.state()]

    @admin.display(description=_("aperçu"))
    def preview(self, obj):
        return obj.description_html if obj.pk else "—"
