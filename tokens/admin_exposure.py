"""The admin of exposed secrets: the "exposés" filter and the exposures inline of the token list and page, the
read-only list of exposures, and the registered reporters (their signing key is generated and shown once)."""

import secrets

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext_lazy as _

from .admin.base import ReadOnlyAdminMixin
from .models import ExposureReporter, TokenExposure

EXPOSURE_FIELDS = ["url", "source", "reporter", "reported_by", "first_seen", "last_seen", "count"]


class ExposedFilter(admin.SimpleListFilter):
    title = _("exposés")
    parameter_name = "expose"

    def lookups(self, request, model_admin):
        return [("oui", _("secret signalé exposé")), ("non", _("jamais signalé"))]

    def queryset(self, request, queryset):
        exposed = Exists(TokenExposure.objects.filter(token=OuterRef("pk")))
        if self.value() == "oui":
            return queryset.filter(exposed)
        if self.value() == "non":
            return queryset.filter(~exposed)
        return queryset


class TokenExposureInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Where the token's secret was seen (read-only; the audit trail has the matching `exposed` events)."""

    model = TokenExposure
    fields = EXPOSURE_FIELDS
    readonly_fields = EXPOSURE_FIELDS
    extra = 0
    can_delete = False
    verbose_name_plural = _("expositions du secret")

    def has_view_permission(self, request, obj=None):
        """Shown, never submitted: a POST of the token's form carries no formset of exposures (nor needs one)."""
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)


@admin.register(TokenExposure)
class TokenExposureAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["first_seen", "token", "url", "source", "reporter", "count", "last_seen"]
    list_filter = ["source", "reporter"]
    search_fields = [
        "url",
        "token__secret_prefix",
        "token__label",
        "token__client__siret",
        "token__client__name",
    ]
    list_select_related = ["token__client", "reporter"]
    readonly_fields = ["token", *EXPOSURE_FIELDS]


@admin.register(ExposureReporter)
class ExposureReporterAdmin(admin.ModelAdmin):
    list_display = ["name", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name"]
    fields = ["name", "active"]

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj else []

    def save_model(self, request, obj, form, change):
        if not change:
            obj.key = secrets.token_urlsafe(32)
        obj.save()

    def response_add(self, request, obj, post_url_continue=None):
        """The new key, shown on this response only (never stored elsewhere than on the reporter)."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Clé de signature"),
            "reporter": obj,
            "key": obj.key,
        }
        response = TemplateResponse(request, "admin/tokens/exposurereporter/key.html", context)
        add_never_cache_headers(response)
        return response
