from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from tokens.models import AccessRequest

from . import requeue
from .admin_filters import NearDeadlineFilter
from .models import (
    DeadlineAlert,
    DeadlineAlertMessage,
    Reminder,
    ReminderMessage,
    ReminderOptOut,
    ReminderStatus,
    SweepRun,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .webhooks import webhook_delivery_replay

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


@admin.register(ReminderOptOut)
class ReminderOptOutAdmin(admin.ModelAdmin):
    list_display = ["token", "by", "at"]
    search_fields = ["token__label", "token__secret_prefix", "token__client__name", "token__client__siret"]
    raw_id_fields = ["token", "by"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "client", "created_at", "disabled_at"]
    list_filter = ["disabled_at"]
    search_fields = ["url", "client__name", "client__siret"]
    raw_id_fields = ["client", "created_by"]
    exclude = ["secret"]


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    # `error` is the technical detail (exception, resolved address): staff only, never shown to integrators.
    readonly_fields = ["at", "status_code", "cause", "error", "duration_ms"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["event", "url", "status", "attempts", "next_attempt_at", "delivered_at"]
    list_filter = ["status", "event__type"]
    search_fields = ["event__id", "url", "event__client__name", "event__client__siret"]
    readonly_fields = [
        "event",
        "endpoint",
        "url",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "lease_until",
        "claimed_by",
        "created_at",
    ]
    inlines = [WebhookAttemptInline]
    actions = ["replay"]

    @admin.action(description=_("Rejouer les livraisons sélectionnées"), permissions=["change"])
    def replay(self, request, queryset):
        # Replaying sends data to a third party again: the change permission is required and each replay is
        # recorded in the admin's history of the delivery (who, when).
        replayed = 0
        with transaction.atomic():
            for delivery in queryset:
                webhook_delivery_replay(delivery=delivery)
                self.log_change(request, delivery, gettext("Livraison rejouée (remise en file)."))
                replayed += 1
        self.message_user(request, _("%d livraison(s) remise(s) en file.") % replayed, messages.SUCCESS)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "client", "created_at"]
    list_filter = ["type"]
    search_fields = ["id", "client__name", "client__siret"]
    readonly_fields = ["id", "type", "client", "payload", "created_at", "dedup_key"]


class DeadlineAlertMessageInline(admin.TabularInline):
    """An alert's messages: one per instructor."""

    model = DeadlineAlertMessage
    fields = tuple(f for f in MESSAGE_FIELDS if f not in ("to_admins", "message_id"))  # fits the page
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(DeadlineAlert)
class DeadlineAlertAdmin(admin.ModelAdmin):
    list_display = ("token", "expires_at", "access_request", "created_at", "sent_at")
    list_select_related = ("token", "access_request__client")
    readonly_fields = ("token", "expires_at", "access_request", "created_at", "sent_at", "last_error")
    inlines = [DeadlineAlertMessageInline]

    def has_add_permission(self, request):
        return False


def _request_queue_near_deadline() -> None:
    """The instructors' request queue (tokens' admin, registered before this module: INSTALLED_APPS order) gets the
    "échéance proche" filter from here, since tokens knows nothing of reminders."""
    queue = admin.site.get_model_admin(AccessRequest)
    if NearDeadlineFilter not in queue.list_filter:
        queue.list_filter = (NearDeadlineFilter, *queue.list_filter)


_request_queue_near_deadline()
