"""Form fields and admin forms of accounts: every address typed in a form leaves it normalized, or as an error."""

from django import forms
from django.contrib.auth import forms as auth_forms
from django.utils.translation import gettext_lazy as _

from .identity import MAX_LENGTH, InvalidEmail, normalize_email
from .models import User


class EmailAddressField(forms.EmailField):
    """An email address, cleaned to its normalized form; look-alike or IDNA-invalid domains are a clear error."""

    default_error_messages = {"invalid": _("Adresse e-mail invalide (exemple : prenom.nom@mairie.fr).")}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_LENGTH)
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if value in self.empty_values:
            return value
        try:
            return normalize_email(value)
        except InvalidEmail as error:
            raise forms.ValidationError(str(error), code="invalid") from None


class UserCreationForm(auth_forms.UserCreationForm):
    class Meta:
        model = User
        fields = ("email",)
        field_classes = {"email": EmailAddressField}


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes = {"email": EmailAddressField}
