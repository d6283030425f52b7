"""Exposed secrets: where a token's secret was seen (TokenExposure) and who may report with a signature
(ExposureReporter). Imported by tokens.models, so that they are models of the `tokens` app."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import Token

URL_MAX_LENGTH = 2000
SOURCE_MAX_LENGTH = 100


class ExposureReporter(models.Model):
    """A secret scanner allowed to sign its reports (HMAC-SHA256 of the body with `key`): signed reports get the
    higher rate limit. The key is kept as is, since checking an HMAC needs it; it is shown once, at creation."""

    name = models.SlugField(_("nom"), max_length=64, unique=True)
    key = models.CharField(_("clé de signature"), max_length=128, editable=False)
    active = models.BooleanField(_("actif"), default=True)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)

    class Meta:
        verbose_name = _("signaleur de secrets exposés")
        verbose_name_plural = _("signaleurs de secrets exposés")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TokenExposure(models.Model):
    """A token's secret seen at one place: one row per (token, url), counted each time it is reported again."""

    token = models.ForeignKey(
        Token, on_delete=models.CASCADE, related_name="exposures", verbose_name=_("jeton")
    )
    url = models.CharField(_("adresse où le secret a été vu"), max_length=URL_MAX_LENGTH, blank=True)
    source = models.CharField(_("source"), max_length=SOURCE_MAX_LENGTH, blank=True)
    reporter = models.ForeignKey(
        ExposureReporter,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="exposures",
        verbose_name=_("signaleur"),
    )
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("signalé par"),
    )
    first_seen = models.DateTimeField(_("premier signalement"), default=timezone.now)
    last_seen = models.DateTimeField(_("dernier signalement"), default=timezone.now)
    count = models.PositiveIntegerField(_("signalements"), default=1)

    class Meta:
        verbose_name = _("exposition d'un secret")
        verbose_name_plural = _("expositions de secrets")
        ordering = ["-first_seen", "-id"]
        constraints = [models.UniqueConstraint(fields=["token", "url"], name="token_exposure_once_per_url")]

    def __str__(self) -> str:
        return f"{self.token_id} — {self.url or self.source}"
