from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.forms import EmailAddressField
from accounts.identity import normalize_email_or_none
from notifications.webhooks import validate_webhook_url
from tokens.credentials import SECRET_MAX_LENGTH
from tokens.models import Origin, Privilege, TokenStatus
from tokens.privilege_display import privilege_text

from .selectors import DEFAULT_SORT, IN_SERVICE, SORTS, DashboardFilters

SORT_CHOICES = [(k, k) for k in SORTS] + [(f"-{k}", f"-{k}") for k in SORTS]


class DashboardFilterForm(forms.Form):
    q = forms.CharField(
        label=_("Rechercher"),
        required=False,
        max_length=100,
        help_text=_("Libellé, préfixe, nom ou SIRET du client, avec ou sans accents"),
    )
    client = forms.TypedChoiceField(label=_("Client"), required=False, coerce=int, empty_value=None)
    status = forms.ChoiceField(label=_("Statut"), required=False)
    within = forms.IntegerField(label=_("Expire dans (jours)"), required=False, min_value=0, max_value=3650)
    origin = forms.ChoiceField(label=_("Origine"), required=False)
    privilege = forms.ChoiceField(label=_("Privilège"), required=False)
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES)

    def __init__(self, *args, clients=(), **kwargs):
        super().__init__(*args, **kwargs)
        everything = [("", _("Tous"))]
        self.fields["client"].choices = everything + [(c.pk, f"{c.name} ({c.siret})") for c in clients]
        self.fields["status"].choices = (
            everything + [(IN_SERVICE, _("en service"))] + list(TokenStatus.choices)
        )
        self.fields["origin"].choices = everything + list(Origin.choices)
        self.fields["privilege"].choices = everything + [
            (p.code, privilege_text(p)) for p in Privilege.objects.order_by("label", "code")
        ]

    def filters(self) -> DashboardFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return DashboardFilters(
            client=data.get("client"),
            status=data.get("status") or "",
            within=data.get("within"),
            origin=data.get("origin") or "",
            privilege=data.get("privilege") or "",
            q=data.get("q") or "",
            sort=data.get("sort") or DEFAULT_SORT,
        )


class RevokeForm(forms.Form):
    reason = forms.CharField(
        label=_("Motif de la révocation"),
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text=_("Obligatoire. Il est conservé dans l'historique du jeton."),
    )
    confirm = forms.BooleanField(
        label=_("Je comprends que ce jeton cessera immédiatement de fonctionner, sans retour possible.")
    )

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError(_("Indiquez le motif de la révocation."))
        return reason


class SecretSearchForm(forms.Form):
    """The search by a whole secret (sent by POST: a secret never travels in a URL)."""

    secret = forms.CharField(
        label=_("Rechercher par jeton complet"),
        max_length=4096,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=_("Collez le secret entier : il est comparé à l'empreinte conservée, jamais enregistré."),
    )


class VerifyForm(forms.Form):
    secret = forms.CharField(
        label=_("Jeton à vérifier"),
        max_length=SECRET_MAX_LENGTH,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=_("Collez le jeton complet. Il n'est ni conservé ni journalisé."),
    )


class WebhookForm(forms.Form):
    client = forms.TypedChoiceField(label=_("Client"), coerce=int)
    url = forms.URLField(
        label=_("URL de réception (HTTPS)"),
        max_length=500,
        assume_scheme="https",
        help_text=_("Par exemple https://exemple.fr/webhooks/tokenmgr — sans identifiant dans l'URL."),
    )
    description = forms.CharField(label=_("Description"), max_length=255, required=False)

    def __init__(self, *args, clients=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.clients = {c.pk: c for c in clients}
        self.fields["client"].choices = [(c.pk, f"{c.name} ({c.siret})") for c in clients]

    def clean_url(self):
        url = self.cleaned_data["url"]
        validate_webhook_url(url)
        return url

    def clean_client(self):
        pk = self.cleaned_data["client"]
        if pk not in self.clients:
            raise ValidationError(_("Client inconnu."))
        return self.clients[pk]


# ---------------------------------------------------------------------------------------------------------------
# Accounts: login (password or emailed link), password reset
# ---------------------------------------------------------------------------------------------------------------
class LoginForm(AuthenticationForm):
    """Django's form with French labels that say what the username is here (the email address)."""

    # A plain CharField: Django's UsernameField applies NFKC, which would map a fullwidth address onto an ASCII one.
    # The account is looked up by the normalized address (accounts.models.UserManager.get_by_natural_key).
    username = forms.CharField(
        label=_("Adresse e-mail"),
        max_length=254,
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )
    password = forms.CharField(
        label=_("Mot de passe"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    error_messages = {
        "invalid_login": _(
            "Adresse e-mail ou mot de passe incorrect. Sans mot de passe, demandez un lien de connexion par e-mail."
        ),
        "inactive": _("Ce compte est désactivé."),
    }


class LoginLinkForm(forms.Form):
    email = EmailAddressField(
        label=_("Adresse e-mail"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
        help_text=_("Format attendu : nom@domaine.fr"),
    )


class ResetForm(PasswordResetForm):
    """Reset also serves accounts without a usable password (created by a reminder's login link)."""

    email = EmailAddressField(
        label=_("Adresse e-mail"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
        help_text=_("Format attendu : nom@domaine.fr"),
    )

    def get_users(self, email):
        from django.contrib.auth import get_user_model

        normalized = normalize_email_or_none(email)
        if normalized is None:
            return get_user_model()._default_manager.none()
        return get_user_model()._default_manager.filter(email=normalized, is_active=True)
