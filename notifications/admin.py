from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import requeue
from .models import DeadlineAlert, Reminder, ReminderMessage, ReminderStatus, SweepRun

MESSAGE_FIELDS = (
    "email",
    "to_admins",
    "status",
    "attempts",
    "next_attempt_at",
    "sent_at",
    "message_id",
    "last_error",
)


class ReminderMessageInline(admin.TabularInline):
    """A reminder's messages: one per recipient."""

    model = ReminderMessage
    fields = MESSAGE_FIELDS
    readonly_fields = MESSAGE_FIELDS
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


def _requeued(modeladmin, request, count: int) -> None:
    modeladmin.message_user(
        request,
        ngettext("%d message remis en file.", "%d messages remis en file.", count) % count,
        messages.SUCCESS if count else messages.WARNING,
    )


@admin.register(Reminder)
class ReminderAdmin(admin.ModelAdmin):
    list_display = (
        "token_prefix",
        "client_name",
        "threshold",
        "route",
        "expires_at",
        "status",
        "recipient_count",
        "sent_at",
    )
    list_filter = ("status", "threshold", "route")
    search_fields = (
        "token__secret_prefix",
        "token__label",
        "token__client__name",
        "token__client__siret",
        "=messages__message_id",
    )
    list_select_related = ("token__client",)
    date_hierarchy = "created_at"
    actions = ["requeue"]
    readonly_fields = [f.name for f in Reminder._meta.fields]
    inlines = [ReminderMessageInline]
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

    @admin.display(description=_("destinataires"))
    def recipient_count(self, obj):
        return len(obj.recipients)

    @admin.action(
        description=_("Remettre en file les messages en échec des rappels sélectionnés"),
        permissions=["change"],
    )
    def requeue(self, request, queryset):
        ids = list(queryset.filter(status=ReminderStatus.FAILED).values_list("pk", flat=True))
        _requeued(self, request, requeue.reminders_requeue(reminder_ids=ids, by=request.user))


@admin.register(ReminderMessage)
class ReminderMessageAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "reminder_link",
        "to_admins",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
    )
    list_filter = ("status", "to_admins", "reminder__threshold", "reminder__route")
    search_fields = (
        "=email",
        "=message_id",
        "reminder__token__secret_prefix",
        "reminder__token__client__name",
    )
    list_select_related = ("reminder__token",)
    date_hierarchy = "created_at"
    actions = ["requeue"]
    readonly_fields = [f.name for f in ReminderMessage._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("rappel"), ordering="reminder__threshold")
    def reminder_link(self, obj):
        return f"J-{obj.reminder.threshold} — {obj.reminder.token.secret_prefix}…"

    @admin.action(description=_("Remettre en file les messages en échec"), permissions=["change"])
    def requeue(self, request, queryset):
        ids = list(queryset.filter(status=ReminderStatus.FAILED).values_list("pk", flat=True))
        _requeued(self, request, requeue.reminder_messages_requeue(message_ids=ids, by=request.user))


@admin.register(SweepRun)
class SweepRunAdmin(admin.ModelAdmin):
    list_display = ("day", "started_at", "finished_at", "queued", "batches")
    date_hierarchy = "finished_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeadlineAlert)
class DeadlineAlertAdmin(admin.ModelAdmin):
    list_display = ("token", "expires_at", "access_request", "created_at", "sent_at")
    list_select_related = ("token", "access_request__client")
    readonly_fields = ("token", "expires_at", "access_request", "created_at", "sent_at", "last_error")

    def has_add_permission(self, request):
        return False
