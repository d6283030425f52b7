"""Admin of the registry around tokens: clients and their members, contacts, privileges, endpoints."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.forms.models import BaseInlineFormSet
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from tokenmgr.search import unaccented

from ..models import (
    Client,
    ClientMembership,
    ClientMembershipEvent,
    Contact,
    Endpoint,
    Privilege,
    Token,
)
from ..privilege_display import privileges_html
from ..services.memberships import client_membership_grant, client_membership_remove
from ..services.registry import (
    contact_delete,
    privilege_delete,
)
from .base import ReadOnlyAdminMixin


# ------------------------------------------------------------------------------
# Clients, contacts, privileges, endpoints
# ------------------------------------------------------------------------------
class TokenLinkDeletionMixin:
    """Deleting a contact or a privilege takes it off its tokens: through its service (one event per token), and
    the token change permission joins the ones needed when tokens are linked to what is deleted."""

    link_field: str  # "contacts" or "privileges": the Token field linking to this model
    delete_service = None  # contact_delete / privilege_delete

    def _delete_one(self, obj, by):
        type(self).delete_service(**{self.link_field[:-1]: obj, "by": by})

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        through = getattr(Token, self.link_field).through
        if (
            not request.user.has_perm("tokens.change_token")
            and through.objects.filter(**{f"{self.link_field[:-1]}__in": objs}).exists()
        ):
            perms_needed = {*perms_needed, str(Token._meta.verbose_name_plural)}
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        self._delete_one(obj, request.user)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset.order_by("pk"):
                self._delete_one(obj, request.user)


class ContactInlineFormSet(BaseInlineFormSet):
    user = None  # set by ContactInline.get_formset

    def delete_existing(self, obj, commit=True):
        if commit:
            contact_delete(contact=obj, by=self.user)


class ContactInline(admin.TabularInline):
    model = Contact
    formset = ContactInlineFormSet
    extra = 0
    fields = ["email", "name", "role", "phone"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        return type(formset.__name__, (formset,), {"user": request.user})


class ClientTokenInline(admin.TabularInline):
    model = Token
    extra = 0
    fields = ["label", "secret_prefix", "origin", "issued_at", "expires_at", "revoked_at"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False
    verbose_name_plural = _("jetons du client")

    def has_add_permission(self, request, obj=None):
        return False


def _with_effective(queryset):
    """Each membership annotated with whether it gives access now (the portal's own rule)."""
    effective = ClientMembership.objects.effective().filter(pk=OuterRef("pk"))
    return queryset.annotate(is_effective=Exists(effective))


@admin.display(description=_("accès en vigueur"), boolean=True)
def _effective(obj):
    return obj.is_effective


class ClientMembershipInline(admin.TabularInline):
    """Who has access to the client, and how. Rows are removed here (audited); grants go through "Ajouter un accès"."""

    model = ClientMembership
    fk_name = "client"
    extra = 0
    fields = ["user", "source", "email", "granted_by", "created_at", "effective"]
    readonly_fields = fields
    can_delete = True
    verbose_name = _("accès au client")
    verbose_name_plural = _("personnes ayant accès au client (cocher « supprimer » pour retirer un accès)")

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return _with_effective(super().get_queryset(request).select_related("user", "granted_by"))

    effective = staticmethod(_effective)


class MembershipGrantForm(forms.ModelForm):
    reason = forms.CharField(label=_("Motif"), required=False, widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = ClientMembership
        fields = ["client", "user"]

    def _get_validation_exclusions(self):
        # A grant to someone who already has access is allowed: it makes their access explicit (source admin).
        return {*super()._get_validation_exclusions(), "client", "user"}


@admin.register(ClientMembership)
class ClientMembershipAdmin(admin.ModelAdmin):
    """Access to clients: grant explicitly (source admin), see how each person got access, remove (audited)."""

    form = MembershipGrantForm
    list_display = ["user", "client", "source", _effective, "email", "granted_by", "created_at"]
    list_filter = ["source"]
    search_fields = ["user__email", "user__last_name", "client__name", "client__siret"]
    list_select_related = ["user", "client", "granted_by"]
    autocomplete_fields = ["client", "user"]
    actions = ["remove_selected"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # removals go through the audited service
        return actions

    def get_readonly_fields(self, request, obj=None):
        return ["client", "user", "source", "email", "granted_by", "created_at"] if obj else []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["client", "user", "reason"]
        return ["client", "user", "source", "email", "granted_by", "created_at"]

    def get_queryset(self, request):
        return _with_effective(super().get_queryset(request))

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        membership = client_membership_grant(
            client=obj.client, user=obj.user, by=request.user, reason=form.cleaned_data.get("reason", "")
        )
        obj.pk = membership.pk

    def delete_model(self, request, obj):
        client_membership_remove(membership=obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            client_membership_remove(membership=membership, by=request.user)

    @admin.action(description=_("Retirer l'accès des personnes sélectionnées"), permissions=["delete"])
    def remove_selected(self, request, queryset):
        count = 0
        for membership in queryset:
            client_membership_remove(membership=membership, by=request.user)
            count += 1
        self.message_user(
            request,
            ngettext("%(count)d accès retiré.", "%(count)d accès retirés.", count) % {"count": count},
            messages.SUCCESS,
        )


@admin.register(ClientMembershipEvent)
class ClientMembershipEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "kind", "email", "client", "source", "actor", "reason"]
    list_filter = ["kind", "source"]
    search_fields = ["email", "client__name", "client__siret"]
    list_select_related = ["client", "actor"]


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ["name", "siret", "token_count", "created_at"]
    search_fields = [unaccented("name"), "siret"]
    inlines = [ContactInline, ClientMembershipInline, ClientTokenInline]
    readonly_fields = ["created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(token_count=Count("tokens", distinct=True))

    def save_formset(self, request, form, formset, change):
        if formset.model is not ClientMembership:
            return super().save_formset(request, form, formset, change)
        # Removals only (the inline adds nothing and changes nothing), each one audited.
        removed = [f.instance for f in formset.deleted_forms if f.instance.pk]
        for membership in removed:
            client_membership_remove(membership=membership, by=request.user)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], removed

    @admin.display(description=_("jetons"), ordering="token_count")
    def token_count(self, obj):
        return obj.token_count


@admin.register(Contact)
class ContactAdmin(TokenLinkDeletionMixin, admin.ModelAdmin):
    list_display = ["email", "name", "role", "client", "phone"]
    list_filter = ["role"]
    search_fields = ["email", "name", "client__name", "client__siret"]
    list_select_related = ["client"]
    autocomplete_fields = ["client"]

    link_field = "contacts"
    delete_service = contact_delete


class EndpointInline(admin.TabularInline):
    model = Endpoint.privileges.through
    extra = 0
    verbose_name = _("endpoint")
    verbose_name_plural = _("endpoints accordés par ce privilège")
    autocomplete_fields = ["endpoint"]


@admin.register(Privilege)
class PrivilegeAdmin(TokenLinkDeletionMixin, admin.ModelAdmin):
    list_display = ["code", "label", "endpoint_list"]
    search_fields = ["code", "label"]
    inlines = [EndpointInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("endpoints")

    def get_readonly_fields(self, request, obj=None):
        return ["code"] if obj else []

    link_field = "privileges"
    delete_service = privilege_delete

    @admin.display(description=_("endpoints"))
    def endpoint_list(self, obj):
        return ", ".join(e.path for e in obj.endpoints.all())


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["path", "label", "privilege_list"]
    list_filter = ["privileges"]
    search_fields = ["path", "label"]
    filter_horizontal = ["privileges"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("privileges")

    def get_readonly_fields(self, request, obj=None):
        # The paths are the reference list of the availability statistics: fixed by the catalogue migration.
        return ["path"] if obj else []

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("privilèges"))
    def privilege_list(self, obj):
        return privileges_html(obj.privileges.all())
