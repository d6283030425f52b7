from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import Reminder, ReminderStatus, SweepRun


@admin.register(Reminder)
class ReminderAdmin(admin.ModelAdmin):
    list_display = (
        "token_prefix",
        "client_name",
        "threshold",
        "route",
        "expires_at",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
    )
    list_filter = ("status", "threshold", "route")
    search_fields = (
        "token__secret_prefix",
        "token__label",
        "token__client__name",
        "token__client__siret",
        "=message_id",
    )
    list_select_related = ("token__client",)
    date_hierarchy = "created_at"
    actions = ["requeue"]
    readonly_fields = [f.name for f in Reminder._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("jeton"), ordering="token__secret_prefix")
    def token_prefix(self, obj):
        return f"{obj.token.secret_prefix}… {obj.token.label}".strip()

    @admin.display(description=_("client"), ordering="token__client__name")
    def client_name(self, obj):
        return obj.token.client.name

    @admin.action(description=_("Remettre en file les rappels en échec"), permissions=["change"])
    def requeue(self, request, queryset):
        ids = list(queryset.filter(status=ReminderStatus.FAILED).values_list("pk", flat=True))
        count = services.reminders_requeue(reminder_ids=ids, by=request.user)
        self.message_user(
            request,
            ngettext("%d rappel remis en file.", "%d rappels remis en file.", count) % count,
            messages.SUCCESS if count else messages.WARNING,
        )


@admin.register(SweepRun)
class SweepRunAdmin(admin.ModelAdmin):
    list_display = ("day", "started_at", "finished_at", "queued", "batches")
    date_hierarchy = "finished_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
