from django.contrib import admin

from .models import CalendarFeed


@admin.register(CalendarFeed)
class CalendarFeedAdmin(admin.ModelAdmin):
    list_display = ["user", "created_at", "last_fetched_at"]
    readonly_fields = ["user", "key_digest", "created_at", "last_fetched_at"]
    search_fields = ["user__email"]
