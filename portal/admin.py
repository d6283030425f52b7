from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import (
    CalendarFeed,
    ReminderOptOut,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .webhooks import webhook_delivery_replay


@admin.register(ReminderOptOut)
class ReminderOptOutAdmin(admin.ModelAdmin):
    list_display = ["token", "by", "at"]
    search_fields = ["token__label", "token__secret_prefix", "token__client__name", "token__client__siret"]
    raw_id_fields = ["token", "by"]


@admin.register(CalendarFeed)
class CalendarFeedAdmin(admin.ModelAdmin):
    list_display = ["user", "created_at", "last_fetched_at"]
    readonly_fields = ["user", "key_digest", "created_at", "last_fetched_at"]
    search_fields = ["user__username", "user__email"]


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
