"""Forms of the access-request pages and of the instructor actions: server-side validation, French messages."""

import re

from django import forms
from django.contrib.auth import password_validation
from django.utils.translation import gettext_lazy as _

from accounts.forms import EmailAddressField

from .models import AccessRequest, Privilege, validate_pdf
from .privilege_display import privilege_html
from .services.requests import AccessRequestData

PHONE_RE = re.compile(r"^\+?[0-9 .()-]{6,24}$")
ROLE_LABELS = {
    "requester": _("Demandeur"),
    "technical": _("Contact technique"),
    "business": _("Contact métier"),
}


class PrivilegeChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return privilege_html(obj)


def _phone(value: str) -> str:
    value = (value or "").strip()
    if value and not PHONE_RE.match(value):
        raise forms.ValidationError(_("Numéro de téléphone invalide (chiffres, espaces, « + » accepté)."))
    return value


class AccessRequestForm(forms.Form):
    """New request, renewal and extension. `submitting` turns on the completeness rules of a submission.

    For an extension, `base_privileges` are the token's (kept, not editable) and the field lists only the others:
    the applicant picks what is added.
    """

    label = forms.CharField(label=_("Intitulé du projet"), max_length=255, required=False)
    privileges = PrivilegeChoiceField(
        label=_("Données demandées (privilèges)"),
        queryset=Privilege.objects.all(),
        to_field_name="code",
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    project_description = forms.CharField(
        label=_("Description du projet"),
        widget=forms.Textarea(attrs={"rows": 5}),
        required=False,
        help_text=_("À quoi serviront les données, pour quelles démarches."),
    )
    legal_basis_nature = forms.ChoiceField(
        label=_("Nature du cadre juridique"),
        choices=[("", "—")] + list(AccessRequest.LegalNature.choices),
        required=False,
    )
    legal_basis_text = forms.CharField(
        label=_("Cadre juridique"),
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text=_("Référence précise du texte (ex. article L. 113-12 du code des relations…)."),
    )
    legal_basis_url = forms.URLField(
        label=_("Lien vers le texte"), required=False, max_length=500, assume_scheme="https"
    )
    legal_basis_document = forms.FileField(
        label=_("Ou document (PDF, 10 Mo maximum)"),
        required=False,
        validators=[validate_pdf],
        widget=forms.ClearableFileInput(attrs={"accept": "application/pdf,.pdf"}),
    )
    expected_volume = forms.IntegerField(
        label=_("Volumétrie attendue (appels par minute)"), min_value=1, max_value=100_000, required=False
    )

    def __init__(
        self,
        *args,
        kind: str = AccessRequest.Kind.NEW,
        submitting: bool = False,
        base_privileges=None,
        existing_document: str = "",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.submitting = submitting
        self.existing_document = existing_document
        self.base_privileges = list(base_privileges or [])
        for role, role_label in ROLE_LABELS.items():
            self.fields[f"{role}_name"] = forms.CharField(
                label=_("%(role)s — nom et prénom") % {"role": role_label}, max_length=255, required=False
            )
            self.fields[f"{role}_email"] = EmailAddressField(
                label=_("%(role)s — adresse e-mail") % {"role": role_label}, required=False
            )
            self.fields[f"{role}_phone"] = forms.CharField(
                label=_("%(role)s — téléphone") % {"role": role_label}, max_length=32, required=False
            )
        if kind == AccessRequest.Kind.EXTENSION:
            field = self.fields["privileges"]
            field.queryset = Privilege.objects.exclude(pk__in=[p.pk for p in self.base_privileges])
            field.label = _("Données ajoutées (privilèges supplémentaires)")

    def contact_fields(self):
        return [
            (label, [self[f"{role}_{k}"] for k in ("name", "email", "phone")])
            for role, label in ROLE_LABELS.items()
        ]

    def clean_requester_phone(self):
        return _phone(self.cleaned_data.get("requester_phone"))

    def clean_technical_phone(self):
        return _phone(self.cleaned_data.get("technical_phone"))

    def clean_business_phone(self):
        return _phone(self.cleaned_data.get("business_phone"))

    def clean(self):
        cleaned = super().clean()
        picked = list(cleaned.get("privileges") or [])
        if self.kind == AccessRequest.Kind.EXTENSION and not picked and "privileges" not in self.errors:
            self.add_error("privileges", _("Choisissez au moins une donnée à ajouter."))
        if not self.submitting:
            return cleaned
        required = {
            "project_description": _("Décrivez votre projet."),
            "legal_basis_nature": _("Précisez la nature du cadre juridique."),
            "legal_basis_text": _("Indiquez le cadre juridique qui justifie l'accès aux données."),
            "expected_volume": _("Indiquez la volumétrie attendue."),
        }
        for name, message in required.items():
            if name not in self.errors and cleaned.get(name) in (None, ""):
                self.add_error(name, message)
        if "privileges" not in self.errors and not picked and not self.base_privileges:
            self.add_error("privileges", _("Choisissez au moins une donnée."))
        if (
            "legal_basis_url" not in self.errors
            and "legal_basis_document" not in self.errors
            and not cleaned.get("legal_basis_url")
            and not cleaned.get("legal_basis_document")
            and not self.existing_document
        ):
            self.add_error(
                "legal_basis_url",
                _("Donnez le lien vers le texte ou joignez-le en PDF (l'un des deux est requis)."),
            )
        for role, role_label in ROLE_LABELS.items():
            for k, what in (("name", _("le nom")), ("email", _("l'adresse e-mail"))):
                name = f"{role}_{k}"
                if name not in self.errors and not cleaned.get(name):
                    self.add_error(
                        name, _("Indiquez %(what)s (%(role)s).") % {"what": what, "role": role_label}
                    )
        return cleaned

    def all_privileges(self) -> list[Privilege]:
        picked = list(self.cleaned_data.get("privileges") or [])
        return list({p.pk: p for p in [*self.base_privileges, *picked]}.values())

    def to_data(self) -> AccessRequestData:
        c = self.cleaned_data
        document = c.get("legal_basis_document")
        if document is False:  # "clear" ticked
            document = ""
        elif not document:
            document = None
        return AccessRequestData(
            label=c.get("label") or "",
            privileges=self.all_privileges(),
            project_description=c.get("project_description") or "",
            legal_basis_nature=c.get("legal_basis_nature") or "",
            legal_basis_text=c.get("legal_basis_text") or "",
            legal_basis_url=c.get("legal_basis_url") or "",
            legal_basis_document=document,
            contacts={
                role: {k: c.get(f"{role}_{k}") or "" for k in ("name", "email", "phone")}
                for role in ROLE_LABELS
            },
            expected_volume=c.get("expected_volume"),
        )


class MessageForm(forms.Form):
    body = forms.CharField(
        label=_("Votre message"), widget=forms.Textarea(attrs={"rows": 3}), max_length=5000, strip=True
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Motif"),
        widget=forms.Textarea(attrs={"rows": 4}),
        strip=True,
        error_messages={"required": _("Un motif est obligatoire.")},
    )


class ValidateForm(forms.Form):
    revoke_previous = forms.BooleanField(
        label=_(
            "Révoquer immédiatement l'ancien jeton (sinon il reste valable jusqu'à sa propre expiration)"
        ),
        required=False,
    )
    revoke_reason = forms.CharField(
        label=_("Motif de la révocation"),
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        strip=True,
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("revoke_previous") and not cleaned.get("revoke_reason"):
            self.add_error("revoke_reason", _("Un motif est obligatoire pour révoquer l'ancien jeton."))
        return cleaned


class RegenerateForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("Je confirme : l'ancien secret cessera de fonctionner immédiatement."),
        error_messages={"required": _("Cochez la case pour confirmer la régénération.")},
    )
    reason = forms.CharField(label=_("Motif (facultatif)"), required=False, max_length=500)


class SignupForm(forms.Form):
    email = EmailAddressField(label=_("Adresse e-mail professionnelle"))


class AccountForm(forms.Form):
    """Name and password of a new account (its email is already verified)."""

    first_name = forms.CharField(label=_("Prénom"), max_length=150)
    last_name = forms.CharField(label=_("Nom"), max_length=150)
    password1 = forms.CharField(label=_("Mot de passe"), widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(
        label=_("Confirmation du mot de passe"), widget=forms.PasswordInput, strip=False
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self):
        cleaned = super().clean()
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("Les deux mots de passe ne correspondent pas."))
        elif p1:
            try:
                password_validation.validate_password(p1, self.user)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned
