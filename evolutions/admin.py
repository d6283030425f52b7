"""Staff's working surface for evolutions: write drafts, publish them (button or action: services.evolution_publish),
correct published entries with a note (services.evolution_correct: a new revision), watch the notices' outbox."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .models import Evolution, EvolutionNotice, EvolutionRevision, EvolutionStatus, NoticeStatus


class EvolutionForm(forms.ModelForm):
    correction_note = forms.CharField(
        label=_("Motif de la correction"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_(
            "Obligatoire pour modifier une évolution publiée : la correction est affichée avec l'entrée."
        ),
    )

    class Meta:
        model = Evolution
        fields = ["kind", "title", "body", "endpoints", "effective_on", "deprecation_at", "sunset_at"]

    def clean(self):
        cleaned = super().clean()
        services.evolution_dates_check(
            deprecation_at=cleaned.get("deprecation_at"), sunset_at=cleaned.get("sunset_at")
        )
        published = self.instance.pk and self.instance.status == EvolutionStatus.PUBLISHED
        changed = [f for f in self.changed_data if f != "correction_note"]
        if published and changed and not (cleaned.get("correction_note") or "").strip():
            raise ValidationError(
                {"correction_note": _("Une évolution publiée ne se modifie pas sans motif : indiquez-le.")}
            )
        return cleaned


class RevisionInline(admin.TabularInline):
    model = EvolutionRevision
    extra = 0
    can_delete = False
    fields = ["number", "created_at", "created_by", "note", "title", "sunset_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Evolution)
class EvolutionAdmin(admin.ModelAdmin):
    form = EvolutionForm
    list_display = ["title", "kind", "status", "effective_on", "sunset_at", "published_at", "revision"]
    list_filter = ["status", "kind", "endpoints"]
    search_fields = ["title", "body", "endpoints__path"]
    filter_horizontal = ["endpoints"]
    readonly_fields = ["status", "published_at", "revision", "corrected_at", "affected_privileges"]
    inlines = [RevisionInline]
    actions = ["publish"]
    change_form_template = "admin/evolutions/evolution/change_form.html"

    def get_fieldsets(self, request, obj=None):
        main = ["kind", "title", "body", "endpoints", "affected_privileges", "effective_on"]
        fieldsets = [
            (None, {"fields": main}),
            (_("Retrait"), {"fields": ["deprecation_at", "sunset_at"]}),
            (_("Publication"), {"fields": ["status", "published_at", "revision", "corrected_at"]}),
        ]
        if obj is not None and obj.status == EvolutionStatus.PUBLISHED:
            fieldsets.insert(1, (_("Correction"), {"fields": ["correction_note"]}))
        return fieldsets

    @admin.display(description=_("privilèges concernés"))
    def affected_privileges(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        return format_html_join(", ", "{}", ((p.code,) for p in obj.privileges())) or "—"

    def save_model(self, request, obj, form, change):
        if change and obj.status == EvolutionStatus.PUBLISHED:
            return  # written by save_related, through the correction service
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        obj = form.instance
        if change and obj.status == EvolutionStatus.PUBLISHED:
            try:
                services.evolution_correct(
                    evolution=obj,
                    note=form.cleaned_data.get("correction_note", ""),
                    by=request.user,
                    endpoints=form.cleaned_data.get("endpoints"),
                    **{f: form.cleaned_data.get(f) for f in services.EDITABLE_FIELDS},
                )
            except services.EvolutionError as error:
                transaction.set_rollback(True)
                self.message_user(request, str(error), messages.ERROR)
            for (
                formset
            ) in formsets:  # the read-only revisions: nothing to save, but the change message reads them
                self.save_formset(request, form, formset, change=change)
            return
        super().save_related(request, form, formsets, change)

    def _publish(self, request, evolution) -> bool:
        try:
            result = services.evolution_publish(evolution=evolution, by=request.user)
        except (services.EvolutionError, ValidationError) as error:
            text = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
            self.message_user(request, f"{evolution.title} : {text}", messages.ERROR)
            return False
        self.message_user(
            request,
            ngettext(
                "« %(title)s » publiée : %(n)d personne sera prévenue.",
                "« %(title)s » publiée : %(n)d personnes seront prévenues.",
                result.notices,
            )
            % {"title": evolution.title, "n": result.notices},
            messages.SUCCESS,
        )
        return True

    @admin.action(description=_("Publier les évolutions sélectionnées"))
    def publish(self, request, queryset):
        for evolution in queryset.filter(status=EvolutionStatus.DRAFT):
            self._publish(request, evolution)

    def response_change(self, request, obj):
        if "_publish" in request.POST:
            self._publish(request, obj)
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


@admin.register(EvolutionNotice)
class EvolutionNoticeAdmin(admin.ModelAdmin):
    list_display = ["email", "digest_on", "status", "attempts", "sent_at", "last_error"]
    list_filter = ["status", "digest_on"]
    search_fields = ["email"]
    readonly_fields = [f.name for f in EvolutionNotice._meta.fields if f.name != "id"]
    actions = ["requeue"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Remettre en file les avis en échec"))
    def requeue(self, request, queryset):
        n = services.evolution_notices_requeue(
            notice_ids=queryset.filter(status=NoticeStatus.FAILED).values_list("pk", flat=True)
        )
        self.message_user(request, ngettext("%d avis remis en file.", "%d avis remis en file.", n) % n)
