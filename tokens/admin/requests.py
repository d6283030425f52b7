"""Access requests in the admin.

The request's content belongs to the applicant: the admin never edits it. Staff who may view requests read them;
staff holding `tokens.instruct_accessrequest` also validate, refuse, request changes and write to the applicant,
each action through its service (one transaction, audited, notified).
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from tokenmgr.errors import ApplicationError
from tokenmgr.pages import report_error

from .. import request_queue, selectors, services, words
from ..forms import MessageForm, ReasonForm, ValidateForm
from ..models import AccessRequest, AccessRequestEvent
from ..privilege_display import privileges_html
from .base import ReadOnlyAdminMixin

STATE_COLOURS = {
    AccessRequest.State.DRAFT: "#666",
    AccessRequest.State.SUBMITTED: "#0063cb",
    AccessRequest.State.CHANGES_REQUESTED: "#b34000",
    AccessRequest.State.VALIDATED: "#18753c",
    AccessRequest.State.REFUSED: "#ce0500",
    AccessRequest.State.ABANDONED: "#666",
}

ACTIONS = {
    "validate": {
        "title": _("Valider la demande"),
        "form": ValidateForm,
        "button": _("Valider et délivrer le jeton"),
    },
    "refuse": {"title": _("Refuser la demande"), "form": ReasonForm, "button": _("Refuser")},
    "request_changes": {
        "title": _("Demander des modifications"),
        "form": ReasonForm,
        "button": _("Renvoyer au demandeur"),
    },
}


def _with_changes(events) -> list[AccessRequestEvent]:
    """Events with `changes`: the (label, old, new) values an update recorded, for the history table."""
    labels = {**selectors.DIFF_LABELS, "privileges": _("Privilèges")}
    events = list(events)
    for event in events:
        event.changes = [
            (
                labels.get(name, name),
                _audit_text(words.request_field_display(name, change.get("old"))),
                _audit_text(words.request_field_display(name, change.get("new"))),
            )
            for name, change in (event.data or {}).get("changes", {}).items()
        ]
    return events


def _audit_text(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("short_id", "client", "kind", "state_badge", "requester", "submitted_at", "token_link")
    list_filter = ("state", "kind", "submitted_at")  # + "échéance proche", added by notifications.admin
    search_fields = (
        "client__name",
        "client__siret",
        "applicant__email",
        "contacts__requester__email",
        "label",
    )
    list_select_related = ("client", "applicant", "token")
    ordering = ("-submitted_at", "-created_at")
    date_hierarchy = "created_at"
    change_form_template = "tokens/admin/accessrequest_change_form.html"
    fieldsets = (
        (
            None,
            {"fields": ("client", "kind", "state_badge", "applicant", "token_link", "prefilled_from_link")},
        ),
        (
            _("Projet"),
            {"fields": ("label", "privilege_list", "project_description", "expected_volume")},
        ),
        (
            _("Cadre juridique"),
            {"fields": ("legal_basis_nature", "legal_basis_text", "legal_basis_url", "document_link")},
        ),
        (_("Contacts"), {"fields": ("contact_list",)}),
        (
            _("Suivi"),
            {"fields": ("created_at", "submitted_at", "decided_at", "decided_by", "issued_token_link")},
        ),
    )

    # -- permissions: never edited here; instructors see everything, other staff need the view permission.

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or selectors.is_instructor(user=request.user)

    def has_module_permission(self, request):
        return super().has_module_permission(request) or selectors.is_instructor(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        return [f for _name, opts in self.fieldsets for f in opts["fields"]]

    # -- display helpers
    @admin.display(description=_("demande"), ordering="created_at")
    def short_id(self, obj):
        return str(obj.public_id)[:8]

    @admin.display(description=_("état"), ordering="state")
    def state_badge(self, obj):
        return format_html(
            '<strong style="color:{}">{}</strong>',
            STATE_COLOURS.get(obj.state, "#000"),
            obj.get_state_display(),
        )

    @admin.display(description=_("demandeur"))
    def requester(self, obj):
        return request_queue.requester(obj)

    @admin.display(description=_("jeton concerné"))
    def token_link(self, obj):
        if obj.token_id is None:
            return "—"
        url = reverse("admin:tokens_token_change", args=[obj.token_id])
        return format_html(
            '<a href="{}">{}</a> ({})', url, obj.token.secret_prefix, obj.token.get_origin_display()
        )

    @admin.display(description=_("jeton délivré"))
    def issued_token_link(self, obj):
        if obj.issued_token_id is None:
            return "—"
        url = reverse("admin:tokens_token_change", args=[obj.issued_token_id])
        return format_html('<a href="{}">{}</a>', url, obj.issued_token.public_id)

    @admin.display(description=_("pré-remplie depuis"))
    def prefilled_from_link(self, obj):
        if obj.prefilled_from_id is None:
            return "—"
        url = reverse("admin:tokens_accessrequest_change", args=[obj.prefilled_from_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.prefilled_from.public_id)[:8])

    @admin.display(description=_("privilèges demandés"))
    def privilege_list(self, obj):
        return privileges_html(obj.privileges.all()) or "—"

    @admin.display(description=_("document"))
    def document_link(self, obj):
        if not obj.legal_basis_document:
            return "—"
        url = reverse("admin:tokens_accessrequest_document", args=[obj.pk])
        name = words.document_name(obj.legal_basis_document)
        return format_html('{} — <a href="{}" download="{}">{}</a>', name, url, name, _("Télécharger le PDF"))

    @admin.display(description=_("contacts"))
    def contact_list(self, obj):
        labels = {"requester": _("Demandeur"), "technical": _("Technique"), "business": _("Métier")}
        return format_html_join(
            "",
            "<div><strong>{}</strong>{} {} &lt;{}&gt; {}</div>",
            (
                (
                    labels[r],
                    gettext(":"),
                    obj.contact(r).get("name", ""),
                    obj.contact(r).get("email", ""),
                    obj.contact(r).get("phone", ""),
                )
                for r in AccessRequest.CONTACT_ROLES
            ),
        )

    # -- pages
    def get_urls(self):
        extra = [
            path(
                "<int:object_id>/instruire/<str:action>/",
                self.admin_site.admin_view(self.action_view),
                name="tokens_accessrequest_action",
            ),
            path(
                "<int:object_id>/message/",
                self.admin_site.admin_view(self.message_view),
                name="tokens_accessrequest_message",
            ),
            path(
                "<int:object_id>/document/",
                self.admin_site.admin_view(self.document_view),
                name="tokens_accessrequest_document",
            ),
        ]
        return extra + super().get_urls()

    def _get(self, request, object_id) -> AccessRequest:
        obj = get_object_or_404(
            AccessRequest.objects.select_related("client", "token", "applicant"), pk=object_id
        )
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return obj

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self._get(request, object_id)
        can_instruct = selectors.is_instructor(user=request.user)
        conflict = (
            selectors.instructor_conflict(user=request.user, access_request=obj) if can_instruct else ""
        )
        extra_context = {
            **(extra_context or {}),
            "diff": selectors.access_request_diff(access_request=obj),
            "events": _with_changes(obj.events.select_related("actor")),
            "thread": obj.messages.select_related("author"),
            "can_instruct": can_instruct,
            "can_decide": can_instruct and obj.state == AccessRequest.State.SUBMITTED and not conflict,
            "conflict": conflict,
            "message_form": MessageForm() if can_instruct else None,
            "actions": [
                (name, spec["title"], reverse("admin:tokens_accessrequest_action", args=[obj.pk, name]))
                for name, spec in ACTIONS.items()
            ],
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def action_view(self, request, object_id, action):
        if action not in ACTIONS:
            raise Http404
        obj = self._get(request, object_id)
        if not selectors.is_instructor(user=request.user):
            raise PermissionDenied
        spec = ACTIONS[action]
        change_url = reverse("admin:tokens_accessrequest_change", args=[obj.pk])
        conflict = selectors.instructor_conflict(user=request.user, access_request=obj)
        if conflict:  # the services refuse it too; no decision form for such a request
            messages.error(request, conflict)
            return redirect(change_url)
        form = spec["form"](request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                if action == "validate":
                    token = services.access_request_validate(
                        access_request=obj,
                        by=request.user,
                        revoke_previous=form.cleaned_data["revoke_previous"],
                        revoke_reason=form.cleaned_data["revoke_reason"],
                    )
                    messages.success(
                        request,
                        _("Demande validée : jeton %(id)s délivré (secret à récupérer par le demandeur).")
                        % {"id": token.public_id},
                    )
                elif action == "refuse":
                    services.access_request_refuse(
                        access_request=obj, by=request.user, reason=form.cleaned_data["reason"]
                    )
                    messages.success(request, _("Demande refusée."))
                else:
                    services.access_request_request_changes(
                        access_request=obj, by=request.user, reason=form.cleaned_data["reason"]
                    )
                    messages.success(request, _("Modifications demandées au demandeur."))
                return redirect(change_url)
            except ApplicationError as error:
                report_error(request, error)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": spec["title"],
            "form": form,
            "button": spec["button"],
            "action": action,
            "change_url": change_url,
            "diff": selectors.access_request_diff(access_request=obj) if action == "validate" else None,
        }
        return TemplateResponse(request, "tokens/admin/accessrequest_action.html", context)

    def message_view(self, request, object_id):
        obj = self._get(request, object_id)
        if request.method != "POST" or not selectors.is_instructor(user=request.user):
            raise PermissionDenied
        form = MessageForm(request.POST)
        if form.is_valid():
            try:
                services.access_request_message_post(
                    access_request=obj, by=request.user, body=form.cleaned_data["body"], from_instructor=True
                )
                messages.success(request, _("Message envoyé au demandeur."))
            except ApplicationError as error:
                report_error(request, error)
        else:
            messages.error(request, _("Le message est vide."))
        return redirect(reverse("admin:tokens_accessrequest_change", args=[obj.pk]))

    def document_view(self, request, object_id):
        obj = self._get(request, object_id)
        if not obj.legal_basis_document:
            raise Http404
        return FileResponse(obj.legal_basis_document.open("rb"), content_type="application/pdf")


@admin.register(AccessRequestEvent)
class AccessRequestEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "access_request", "kind", "actor", "from_state", "to_state", "reason")
    list_filter = ("kind",)
    list_select_related = ("access_request__client", "actor")


__all__ = ["AccessRequestAdmin", "AccessRequestEventAdmin"]
