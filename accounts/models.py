"""People who sign in: one account per normalized email address, which is also the login."""

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from .identity import MAX_LENGTH, InvalidEmail, normalize_email, normalize_email_or_none


class UserManager(BaseUserManager):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email):
        """The identity module's form (Django's own lower-cases the domain with str.lower, folding look-alikes)."""
        return normalize_email(email)

    def get_by_natural_key(self, username):
        """The account of an address as typed at sign-in; an address that cannot be normalized has none."""
        email = normalize_email_or_none(username or "")
        if email is None:
            raise self.model.DoesNotExist
        return self.get(email=email)

    def _create_user(self, email, password, **extra_fields):
        user = self.model(email=normalize_email(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        if extra_fields.get("is_staff") is not True or extra_fields.get("is_superuser") is not True:
            raise ValueError("A superuser has is_staff=True and is_superuser=True.")
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """Django's user without `username`: the login is the email address, stored only in its normalized form."""

    username = None
    email = models.EmailField(
        _("adresse e-mail"),
        max_length=MAX_LENGTH,
        unique=True,
        error_messages={"unique": _("Un compte existe déjà pour cette adresse e-mail.")},
    )

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        verbose_name = _("utilisateur")
        verbose_name_plural = _("utilisateurs")
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @classmethod
    def normalize_username(cls, username):
        # AbstractBaseUser applies NFKC here, which maps fullwidth letters to ASCII ones: never on an address.
        return username

    def clean(self):
        if not self.email:  # blank: reported by the field's own validation
            return
        try:
            self.email = normalize_email(self.email)
        except InvalidEmail as error:
            raise ValidationError({"email": str(error)}, code="invalid") from None

    def save(self, *args, **kwargs):
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)
