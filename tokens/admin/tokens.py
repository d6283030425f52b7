"""Admin of tokens: list, filters, issue, revoke, secret look-up, exports, audit trail, import runs.

Every write that matters goes through tokens.services: issuing (token_issue, on a page of its own: the POST issues
and redirects, the secret is shown once on the GET that follows and never again), revoking (token_revoke, with a
reason asked on a confirmation page), deleting a privilege or a contact (privilege_delete, contact_delete: each
token they change gets its event). A token secret never travels in a URL: a pasted secret is looked up by a POST.
"""

import datetime as dt
import hashlib
import secrets

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers, widgets
from django.contrib.admin.views.main import SEARCH_VAR
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters

from accounts.identity import InvalidEmail, normalize_email
from tokenmgr.search import unaccented

from .. import credentials, exports, validity
from ..admin_exposure import ExposedFilter, TokenExposureInline
from ..models import (
    Contact,
    Origin,
    Token,
    TokenEvent,
    TokenImport,
    TokenStatus,
    status_expression,
)
from ..privilege_display import privilege_text, privileges_html
from ..services.registry import (
    AlreadyRevoked,
    ContactData,
    contacts_get_or_create,
    token_issue,
    token_revoke,
)
from .base import ReadOnlyAdminMixin

STATUS_FIELD = "current_status"


def with_status(queryset, now: dt.datetime | None = None):
    """The token status rule (tokens.models.status_expression), annotated as `current_status`."""
    return queryset.annotate(**{STATUS_FIELD: status_expression(now or timezone.now())})


# ------------------------------------------------------------------------------
# Tokens: filters
# ------------------------------------------------------------------------------
class StatusFilter(admin.SimpleListFilter):
    """On TokenAdmin's queryset, which get_queryset() annotates with the status."""

    title = _("statut")
    parameter_name = "statut"

    def lookups(self, request, model_admin):
        return TokenStatus.choices

    def queryset(self, request, queryset):
        value = self.value()
        if value in TokenStatus.values:
            return queryset.filter(**{STATUS_FIELD: value})
        return queryset


class ExpiryWindowFilter(admin.SimpleListFilter):
    """Calendar windows (TIME_ZONE days) as indexed ranges on expires_at."""

    title = _("échéance")
    parameter_name = "echeance"
    WINDOWS = (15, 30, 60, 90)

    def lookups(self, request, model_admin):
        return [
            *((str(days), _("≤ %(days)d jours") % {"days": days}) for days in self.WINDOWS),
            ("expired", _("expirés")),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        now = timezone.now()
        if value == "expired":
            return queryset.filter(expires_at__lte=now)
        if value in {str(d) for d in self.WINDOWS}:
            end = validity.start_of_day(validity.today() + dt.timedelta(days=int(value) + 1))
            return queryset.filter(expires_at__gt=now, expires_at__lt=end)
        return queryset


# ------------------------------------------------------------------------------
# Tokens: forms
# ------------------------------------------------------------------------------
def _check_contacts(client, contacts) -> None:
    if client is not None and any(c.client_id != client.pk for c in contacts or ()):
        raise ValidationError({"contacts": _("Les contacts doivent appartenir au client du jeton.")})


class TokenIssueForm(forms.ModelForm):
    """Add form: the data token_issue needs. Saving goes through the service, not ModelForm.save()."""

    issued_at = forms.SplitDateTimeField(
        label=_("Émis le"),
        widget=AdminSplitDateTime,
        initial=timezone.now,
        help_text=_("Le jeton expire 18 mois plus tard."),
    )
    origin = forms.ChoiceField(
        label=_("Origine"),
        required=False,
        choices=[("", _("selon la date d'émission")), *Origin.choices],
        help_text=_("Vide : demarches-simplifiees.fr avant septembre 2019, api.gouv.fr ensuite."),
    )
    new_contacts = forms.CharField(
        label=_("Nouveaux contacts"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Adresses e-mail, une par ligne : ajoutées aux contacts (demandeurs) du client."),
    )
    # One value per rendered form: a second submission of the same form (double click, resent POST) issues nothing.
    issue_nonce = forms.CharField(
        widget=forms.HiddenInput, required=False, max_length=64, initial=lambda: secrets.token_urlsafe(16)
    )

    class Meta:
        model = Token
        fields = ["client", "label", "privileges", "issued_at", "origin", "contacts"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["privileges"].label_from_instance = privilege_text  # the label first, then the code

    def clean_new_contacts(self):
        emails = [line.strip() for line in self.cleaned_data["new_contacts"].splitlines() if line.strip()]
        normalized = []
        for email in emails:
            try:
                normalized.append(normalize_email(email))
            except InvalidEmail as exc:
                raise ValidationError(
                    _("Adresse e-mail invalide : %(email)s (%(why)s)") % {"email": email, "why": exc}
                ) from exc
        return list(dict.fromkeys(normalized))

    def clean(self):
        cleaned = super().clean()
        _check_contacts(cleaned.get("client"), cleaned.get("contacts"))
        return cleaned


class TokenChangeForm(forms.ModelForm):
    class Meta:
        model = Token
        fields = ["label", "contacts"]

    def clean(self):
        cleaned = super().clean()
        _check_contacts(self.instance.client, cleaned.get("contacts"))
        return cleaned


class RevokeForm(forms.Form):
    reason = forms.CharField(
        label=_("Motif de la révocation"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Conservé dans le journal des jetons."),
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError(_("Un motif est requis."))
        return reason


# ------------------------------------------------------------------------------
# Tokens
# ------------------------------------------------------------------------------
CSV_COLUMNS = [
    _("identifiant public"),
    _("client"),
    _("SIRET"),
    _("libellé"),
    _("préfixe"),
    _("privilèges"),
    _("origine"),
    _("émis le"),
    _("expire le"),
    _("jours restants"),
    _("statut"),
    _("contacts"),
]


# The admin's own help under a multiple select (translated by Django's catalogue).
SELECT_MULTIPLE_HELP = _("Hold down “Control”, or “Command” on a Mac, to select more than one.")

ISSUED_SECRET_SESSION_KEY = "tokens.admin.issued_secret.{}"
ISSUE_NONCE_SECONDS = 24 * 3600


def _is_full_secret(term: str) -> bool:
    """A whole secret rather than its display prefix: it must go through the secret search form."""
    return credentials.looks_like_full_secret(term)


def _audit_value(value):
    """A changed field's value as the audit event keeps it: contacts by email."""
    if value is None or isinstance(value, str | int):
        return value
    return sorted(getattr(v, "email", str(v)) for v in value)


class SecretSearchForm(forms.Form):
    secret = forms.CharField(label=_("Jeton complet"), max_length=credentials.SECRET_MAX_LENGTH, strip=True)


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    form = TokenChangeForm
    add_form = TokenIssueForm
    list_display = [
        "client",
        "label",
        "secret_prefix",
        "origin",
        "issued_at",
        "expires_at",
        "days_left_display",
        "status_display",
        "privilege_list",
    ]
    list_display_links = ["label"]
    list_select_related = ["client"]
    list_filter = [StatusFilter, "origin", ExpiryWindowFilter, ExposedFilter]
    inlines = [TokenExposureInline]
    search_fields = [
        "client__siret",
        unaccented("client__name"),
        unaccented("label"),
        "secret_prefix",
        "contacts__email",
    ]
    search_help_text = _(
        "SIRET, nom du client, libellé, préfixe, e-mail d'un contact (un jeton complet : formulaire ci-dessous)"
    )
    autocomplete_fields = ["client", "contacts"]
    actions = ["revoke_tokens", "export_csv", "export_csv_excel"]
    list_per_page = 50
    add_fieldsets = [
        (None, {"fields": ["client", "label", "privileges", "issue_nonce"]}),
        (_("Validité"), {"fields": ["issued_at", "origin"]}),
        (_("Contacts"), {"fields": ["contacts", "new_contacts"]}),
    ]
    # Served by get_fieldsets, like add_fieldsets: the admin's checks refuse a link model of its own (Token.contacts)
    # in `fieldsets`, for the form field formfield_for_manytomany gives it here.
    change_fieldsets = [
        (None, {"fields": ["public_id", "client", "label", "privilege_list", "contacts"]}),
        (
            _("Validité"),
            {
                "fields": [
                    "issued_at",
                    "expires_at",
                    "days_left_display",
                    "status_display",
                    "origin",
                    "secret_prefix",
                    "last_used_at",
                    "imported_by_run",
                ]
            },
        ),
        (
            _("Révocation et renouvellement"),
            {
                "fields": [
                    "revoked_at",
                    "revoked_by_display",
                    "revocation_reason",
                    "renewed_by",
                    "renews_display",
                ]
            },
        ),
    ]
    # Everything shown on the change page is read-only but the label and the contacts (TokenChangeForm).
    change_readonly_fields = [
        name
        for _, options in change_fieldsets
        for name in options["fields"]
        if name not in ("label", "contacts")
    ]

    # --- queryset -------------------------------------------------------------
    def get_queryset(self, request):
        qs = (
            super()
            .get_queryset(request)
            .select_related("client", "renewed_by", "revoked_by")
            .prefetch_related("privileges")
        )
        return with_status(qs)

    def get_search_results(self, request, queryset, search_term):
        if _is_full_secret(search_term.strip()):
            return queryset.none(), False  # never looked up from a URL: see changelist_view
        return super().get_search_results(request, queryset, search_term)

    def changelist_view(self, request, extra_context=None):
        term = request.GET.get(SEARCH_VAR, "").strip()
        if _is_full_secret(term):
            # Refused before anything is rendered: the secret is not echoed in the search box or in any link.
            self.message_user(
                request,
                _(
                    "Un jeton complet ne se cherche pas dans la barre de recherche (il apparaîtrait dans l'adresse "
                    "de la page) : utilisez le formulaire « Rechercher par jeton complet »."
                ),
                messages.ERROR,
            )
            kept = [(k, v) for k, v in request.GET.items() if k != SEARCH_VAR]
            url = reverse("admin:tokens_token_changelist")
            return HttpResponseRedirect(f"{url}?{urlencode(kept)}" if kept else url)
        extra_context = {**(extra_context or {}), "secret_max_length": credentials.SECRET_MAX_LENGTH}
        return super().changelist_view(request, extra_context)

    # --- columns --------------------------------------------------------------
    @staticmethod
    def _status_of(obj) -> str:
        return getattr(obj, STATUS_FIELD, None) or obj.status_at()

    @admin.display(description=_("jours restants"), ordering="expires_at")
    def days_left_display(self, obj):
        if self._status_of(obj) == TokenStatus.REVOKED:
            return "—"  # a revoked token never expires: no countdown
        return validity.days_left(obj.expires_at)

    @admin.display(description=_("statut"), ordering=STATUS_FIELD)
    def status_display(self, obj):
        status = self._status_of(obj)
        if status != TokenStatus.REVOKED:
            return TokenStatus(status).label
        return format_html(
            "{}<br><small>{}</small>",
            TokenStatus.REVOKED.label,
            _("le %(day)s par %(who)s — motif : %(reason)s")
            % {
                "day": date_format(timezone.localtime(obj.revoked_at), "SHORT_DATETIME_FORMAT"),
                "who": obj.revoked_by.get_username() if obj.revoked_by else _("système"),
                "reason": obj.revocation_reason or _("non précisé"),
            },
        )

    @admin.display(description=_("privilèges"))
    def privilege_list(self, obj):
        return privileges_html(obj.privileges.all())

    @admin.display(description=_("révoqué par"))
    def revoked_by_display(self, obj):
        return obj.revoked_by or "-"

    @admin.display(description=_("remplace"))
    def renews_display(self, obj):
        previous = Token.objects.filter(renewed_by=obj).first()
        if previous is None:
            return "—"
        url = reverse("admin:tokens_token_change", args=[previous.pk])
        return format_html('<a href="{}">{}</a>', url, previous)

    # --- issuing: POST issues and redirects, the GET that follows shows the secret once -------------------
    def get_urls(self):
        extra = [
            path("emettre/", self.admin_site.admin_view(self.issue_view), name="tokens_token_issue"),
            path(
                "emis/<uuid:public_id>/",
                self.admin_site.admin_view(self.issued_view),
                name="tokens_token_issued",
            ),
            path(
                "recherche-par-jeton/",
                self.admin_site.admin_view(self.secret_search_view),
                name="tokens_token_secret_search",
            ),
        ]
        return extra + super().get_urls()

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        """The token's privileges in the two-list selector, its contacts by autocomplete.

        Their link tables have models of their own (TokenPrivilege, TokenContact: for their indexes), which the admin
        leaves out of its forms; they hold nothing but the pair, so the relation's set() saves the form's choice.
        """
        using = kwargs.get("using")
        if db_field.name in self.get_autocomplete_fields(request):
            kwargs.setdefault(
                "widget", widgets.AutocompleteSelectMultiple(db_field, self.admin_site, using=using)
            )
        else:
            kwargs.setdefault(
                "widget", widgets.FilteredSelectMultiple(db_field.verbose_name, is_stacked=False)
            )
            kwargs.setdefault("help_text", SELECT_MULTIPLE_HELP)
        if (
            "queryset" not in kwargs
            and (queryset := self.get_field_queryset(using, db_field, request)) is not None
        ):
            kwargs["queryset"] = queryset
        return db_field.formfield(**kwargs)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.change_readonly_fields if obj else []

    def has_delete_permission(self, request, obj=None):
        return False  # the registry keeps its history: revoke instead

    def add_view(self, request, form_url="", extra_context=None):
        # The generic add view would show the secret in the answer to its POST: reloading it would issue again.
        return redirect("admin:tokens_token_issue")

    def issue_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form_class = self.get_form(request, None)
        form = form_class(request.POST) if request.method == "POST" else form_class()
        if request.method == "POST" and form.is_valid():
            nonce = form.cleaned_data.get("issue_nonce")
            key = "tokens:admin-issue:" + hashlib.sha256(nonce.encode()).hexdigest() if nonce else None
            if key and not cache.add(key, "", ISSUE_NONCE_SECONDS):
                self.message_user(
                    request,
                    _("Ce formulaire a déjà été envoyé : aucun nouveau jeton n'a été émis."),
                    messages.WARNING,
                )
                first = cache.get(key)
                if first:
                    return redirect("admin:tokens_token_issued", public_id=first)
                return redirect("admin:tokens_token_changelist")
            try:
                token = self._issue(request, form.cleaned_data)
            except BaseException:
                if key:
                    cache.delete(key)
                raise
            if key:
                cache.set(key, str(token.public_id), ISSUE_NONCE_SECONDS)
            return redirect("admin:tokens_token_issued", public_id=token.public_id)
        adminform = helpers.AdminForm(form, self.add_fieldsets, {}, model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Émettre un jeton"),
            "subtitle": None,
            "adminform": adminform,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + adminform.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return self.render_change_form(
            request, context, add=True, form_url=reverse("admin:tokens_token_issue")
        )

    def _issue(self, request, data) -> Token:
        """token_issue from the form's data; the secret waits in the session for its one display."""
        contacts = list(data.get("contacts") or [])
        with transaction.atomic():
            if data.get("new_contacts"):
                contacts += contacts_get_or_create(
                    client=data["client"], contacts=[ContactData(email=e) for e in data["new_contacts"]]
                )
            issued = token_issue(
                client=data["client"],
                privileges=list(data["privileges"]),
                issued_at=data["issued_at"],
                origin=data.get("origin") or None,
                label=data.get("label", ""),
                contacts=list(dict.fromkeys(contacts)),
                by=request.user,
            )
            self.log_addition(request, issued.token, [{"added": {}}])
        request.session[ISSUED_SECRET_SESSION_KEY.format(issued.token.public_id)] = issued.secret
        return issued.token

    def issued_view(self, request, public_id):
        if not self.has_add_permission(request):
            raise PermissionDenied
        token = get_object_or_404(Token.objects.select_related("client"), public_id=public_id)
        # Popped: the first GET shows it, a reload (or any later visit) finds nothing to show.
        secret = request.session.pop(ISSUED_SECRET_SESSION_KEY.format(public_id), None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Jeton émis"),
            "token": token,
            "secret": secret,
            "days_left": validity.days_left(token.expires_at),
            "change_url": reverse("admin:tokens_token_change", args=[token.pk]),
            "add_url": reverse("admin:tokens_token_issue"),
        }
        response = TemplateResponse(request, "admin/tokens/token/issued.html", context)
        add_never_cache_headers(response)
        return response

    @method_decorator(sensitive_post_parameters("secret"))  # hidden from error reports too
    def secret_search_view(self, request):
        """A pasted whole secret, by POST: matched by digest, never written to a URL, a page or a log."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        changelist = reverse("admin:tokens_token_changelist")
        form = SecretSearchForm(request.POST)
        if not form.is_valid():
            self.message_user(request, _("Collez un jeton complet."), messages.ERROR)
            return redirect(changelist)
        token_id = (
            Token.objects.filter(secret_digest=credentials.digest(form.cleaned_data["secret"]))
            .values_list("pk", flat=True)
            .first()
        )
        if token_id is None:
            self.message_user(request, _("Aucun jeton ne correspond à ce secret."), messages.WARNING)
            return redirect(changelist)
        return redirect("admin:tokens_token_change", token_id)

    def save_model(self, request, obj, form, change):
        obj.save()
        if form.changed_data:
            TokenEvent.objects.create(
                token=obj,
                kind=TokenEvent.Kind.UPDATED,
                actor=request.user,
                data={
                    "fields": form.changed_data,
                    "changes": {
                        name: {
                            "old": _audit_value(form.initial.get(name)),
                            "new": _audit_value(form.cleaned_data[name]),
                        }
                        for name in form.changed_data
                    },
                },
            )

    # --- actions --------------------------------------------------------------
    @admin.action(description=_("Révoquer les jetons sélectionnés"), permissions=["change"])
    def revoke_tokens(self, request, queryset):
        form = RevokeForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            revoked, already = 0, []
            for token in queryset.select_related(None).order_by("pk"):
                try:
                    token_revoke(token=token, by=request.user, reason=form.cleaned_data["reason"])
                except AlreadyRevoked:
                    already.append(token)
                else:
                    revoked += 1
            if revoked:
                self.message_user(
                    request,
                    ngettext("%(n)d jeton révoqué.", "%(n)d jetons révoqués.", revoked) % {"n": revoked},
                    messages.SUCCESS,
                )
            if already:
                self.message_user(
                    request,
                    _("Déjà révoqués, laissés tels quels : %(tokens)s")
                    % {"tokens": ", ".join(str(t) for t in already)},
                    messages.WARNING,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Révoquer des jetons"),
            "tokens": queryset,
            "form": form,
            "action_name": "revoke_tokens",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
            "index": request.POST.get("index", "0"),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/tokens/token/revoke_confirmation.html", context)

    @admin.action(description=_("Exporter (CSV)"), permissions=["view"])
    def export_csv(self, request, queryset):
        return self._export(queryset, exports.PLAIN)

    @admin.action(
        description=_("Exporter (CSV pour Excel en français : « ; », UTF-8 avec BOM)"), permissions=["view"]
    )
    def export_csv_excel(self, request, queryset):
        return self._export(queryset, exports.EXCEL_FR)

    def _export(self, queryset, dialect: exports.CsvDialect):
        queryset = queryset.prefetch_related(
            "privileges", Prefetch("contacts", queryset=Contact.objects.order_by("email"))
        ).order_by("expires_at", "pk")
        today = validity.today()
        tz = validity.local_tz()
        rows = (
            [
                token.public_id,
                token.client.name,
                token.client.siret,
                token.label,
                token.secret_prefix,
                " ".join(p.code for p in token.privileges.all()),
                token.origin,
                token.issued_at.astimezone(tz).isoformat(),
                token.expires_at.astimezone(tz).isoformat(),
                validity.days_left(token.expires_at, today),
                getattr(token, STATUS_FIELD),
                " ".join(c.email for c in token.contacts.all()),
            ]
            for token in queryset.iterator(chunk_size=500)
        )
        return exports.csv_response(header=CSV_COLUMNS, rows=rows, basename="jetons", dialect=dialect)


# ------------------------------------------------------------------------------
# Audit log (read-only)
# ------------------------------------------------------------------------------
@admin.register(TokenEvent)
class TokenEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "kind", "token_link", "actor", "reason"]
    list_filter = ["kind", "at"]
    search_fields = ["token__label", "token__secret_prefix", "token__client__siret", "token__client__name"]
    list_select_related = ["token__client", "actor"]
    date_hierarchy = "at"

    @admin.display(description=_("jeton"), ordering="token")
    def token_link(self, obj):
        url = reverse("admin:tokens_token_change", args=[obj.token_id])
        return format_html('<a href="{}">{}</a>', url, obj.token)


@admin.register(TokenImport)
class TokenImportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Audit of import_tokens runs (read-only): which run created a token is shown on the token."""

    list_display = ["started_at", "file_name", "run_by", "rows", "imported", "duplicates", "finished_at"]
    search_fields = ["file_name", "run_by"]
    readonly_fields = list_display
