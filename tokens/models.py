"""The token authority: clients, contacts, privileges and tokens.

A token's status is derived from its dates at read time (`Token.objects.with_status()`), never stored.
"""

import datetime as dt
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case, Exists, OuterRef, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.identity import InvalidEmail, normalize_email

from . import validity
from .siret import validate_siret


def accessible_client_ids(user):
    """The ids of the clients `user` may see now, as a subquery: the one access rule, read on every request."""
    if user is None or not user.is_authenticated:
        return ClientMembership.objects.none().values("client_id")
    return ClientMembership.objects.effective().filter(user_id=user.pk).values("client_id")


class ClientQuerySet(models.QuerySet):
    def accessible_to(self, user):
        return self.filter(pk__in=accessible_client_ids(user))


class Client(models.Model):
    """An administration (or company) holding tokens, identified by its SIRET."""

    name = models.CharField(_("nom"), max_length=255)
    siret = models.CharField(_("SIRET"), max_length=14, unique=True, validators=[validate_siret])
    # Who may see the client: read through Client.objects.accessible_to(), never through this relation alone (a
    # membership proved as a contact stops counting once the person is no longer a contact).
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="ClientMembership",
        through_fields=("client", "user"),
        related_name="clients",
        blank=True,
        verbose_name=_("membres"),
    )
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)

    objects = ClientQuerySet.as_manager()

    class Meta:
        verbose_name = _("client")
        verbose_name_plural = _("clients")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.siret})"


class Contact(models.Model):
    class Role(models.TextChoices):
        REQUESTER = "requester", _("demandeur")
        TECHNICAL = "technical", _("contact technique")
        BUSINESS = "business", _("contact métier")

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="contacts")
    email = models.EmailField(_("e-mail"))
    name = models.CharField(_("nom"), max_length=255, blank=True)
    phone = models.CharField(_("téléphone"), max_length=32, blank=True)
    role = models.CharField(_("rôle"), max_length=16, choices=Role.choices, default=Role.REQUESTER)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["client", "role", "email"]
        constraints = [
            # The address is stored normalized (accounts.identity): equal addresses are equal strings.
            models.UniqueConstraint(fields=["client", "email", "role"], name="contact_unique_per_client_role")
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email

    def save(self, *args, **kwargs):
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)

    def clean(self):
        super().clean()
        if not self.email:  # blank: reported by the field's own validation
            return
        try:
            self.email = normalize_email(self.email)
        except InvalidEmail as error:
            raise ValidationError({"email": str(error)}, code="invalid") from None


class Privilege(models.Model):
    code = models.SlugField(_("code"), max_length=64, unique=True)
    label = models.CharField(_("libellé"), max_length=255)

    class Meta:
        verbose_name = _("privilège")
        verbose_name_plural = _("privilèges")
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Endpoint(models.Model):
    path = models.CharField(_("chemin"), max_length=128, unique=True)
    label = models.CharField(_("libellé"), max_length=255)
    privileges = models.ManyToManyField(Privilege, related_name="endpoints", verbose_name=_("privilèges"))

    class Meta:
        verbose_name = _("endpoint")
        verbose_name_plural = _("endpoints")
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path


class TokenStatus(models.TextChoices):
    ACTIVE = "active", _("actif")
    EXPIRING = "expiring", _("expire bientôt")
    EXPIRED = "expired", _("expiré")
    REVOKED = "revoked", _("révoqué")
    SUPERSEDED = "superseded", _("remplacé")


class Origin(models.TextChoices):
    DEMARCHES_SIMPLIFIEES = "demarches_simplifiees", _("demarches-simplifiees.fr")
    API_GOUV = "api_gouv", _("api.gouv.fr")


EXPIRING_WITHIN_DAYS = 90


def expiring_horizon(now: dt.datetime) -> dt.datetime:
    """The first instant after the expiring window: a token expiring before it, on a day at most
    EXPIRING_WITHIN_DAYS calendar days (TIME_ZONE) after `now`'s, is "expiring"."""
    return validity.start_of_day(validity.local_date(now) + dt.timedelta(days=EXPIRING_WITHIN_DAYS + 1))


def status_expression(now: dt.datetime) -> Case:
    """A token's status as SQL, the one rule (Token.status_at is its Python twin, kept equal by a test).

    Annotate it under any name: `Token.objects.with_status()` uses `status`, the admin and the portal their own.
    """
    return Case(
        When(revoked_at__isnull=False, then=Value(TokenStatus.REVOKED.value)),
        When(expires_at__lte=now, then=Value(TokenStatus.EXPIRED.value)),
        When(renewed_by__isnull=False, then=Value(TokenStatus.SUPERSEDED.value)),
        When(expires_at__lt=expiring_horizon(now), then=Value(TokenStatus.EXPIRING.value)),
        default=Value(TokenStatus.ACTIVE.value),
        output_field=models.CharField(),
    )


class TokenQuerySet(models.QuerySet):
    def revoked(self):
        return self.filter(revoked_at__isnull=False)

    def usable(self, now: dt.datetime | None = None):
        """Tokens that work on the API right now: not revoked, not expired (superseded ones still work)."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())

    def expired(self, now: dt.datetime | None = None):
        return self.filter(revoked_at__isnull=True, expires_at__lte=now or timezone.now())

    def superseded(self, now: dt.datetime | None = None):
        return self.usable(now).filter(renewed_by__isnull=False)

    def active(self, now: dt.datetime | None = None):
        """Usable and not superseded by a renewal: the tokens that reminders are about."""
        return self.usable(now).filter(renewed_by__isnull=True)

    def expiring_between(self, start: dt.datetime, end: dt.datetime):
        """expires_at in [start, end): an indexed range."""
        return self.filter(expires_at__gte=start, expires_at__lt=end)

    def expiring_within(self, days: int, today: dt.date | None = None):
        """Active tokens whose expiry day is at most `days` calendar days away (TIME_ZONE)."""
        today = today or validity.today()
        return self.active().filter(expires_at__lt=validity.start_of_day(today + dt.timedelta(days=days + 1)))

    def with_status(self, now: dt.datetime | None = None):
        return self.annotate(status=status_expression(now or timezone.now()))

    def for_user(self, user):
        return self.filter(client_id__in=accessible_client_ids(user))


class TokenImport(models.Model):
    """One run of `import_tokens` (its audit record): the tokens it created point to it (Token.imported_by_run)."""

    file_name = models.CharField(_("fichier"), max_length=255)
    run_by = models.CharField(_("lancé par"), max_length=150, blank=True)
    started_at = models.DateTimeField(_("commencé le"), default=timezone.now)
    finished_at = models.DateTimeField(_("terminé le"), null=True, blank=True)
    rows = models.PositiveIntegerField(_("lignes"), default=0)
    imported = models.PositiveIntegerField(_("importés"), default=0)
    duplicates = models.PositiveIntegerField(_("doublons"), default=0)

    class Meta:
        verbose_name = _("import de jetons")
        verbose_name_plural = _("imports de jetons")
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} — {self.started_at:%Y-%m-%d %H:%M}"


class Token(models.Model):
    public_id = models.UUIDField(_("identifiant public"), default=uuid.uuid4, unique=True, editable=False)
    # Indexed by token_client_label_issued_idx (client first): no separate index.
    client = models.ForeignKey(
        Client, on_delete=models.PROTECT, related_name="tokens", verbose_name=_("client"), db_index=False
    )
    label = models.CharField(_("libellé"), max_length=255, blank=True)
    # Link tables of their own (TokenPrivilege, TokenContact): they choose their indexes.
    privileges = models.ManyToManyField(
        Privilege, through="TokenPrivilege", related_name="tokens", verbose_name=_("privilèges")
    )
    contacts = models.ManyToManyField(
        Contact, through="TokenContact", related_name="tokens", blank=True, verbose_name=_("contacts")
    )
    issued_at = models.DateTimeField(_("émis le"))
    expires_at = models.DateTimeField(_("expire le"))
    origin = models.CharField(_("origine"), max_length=32, choices=Origin.choices)
    # Shown to people, searched with icontains (which no index serves): not indexed.
    secret_prefix = models.CharField(_("préfixe"), max_length=16)
    # Unique through Meta.constraints: one plain btree, without the LIKE index `unique=True` adds on PostgreSQL.
    secret_digest = models.CharField(max_length=64, editable=False)
    revoked_at = models.DateTimeField(_("révoqué le"), null=True, blank=True)
    # Indexed only where set (token_revoked_by_idx): the NULLs of every token need no index entry.
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    revocation_reason = models.TextField(_("motif de révocation"), blank=True)
    # At most one predecessor per token (token_renewed_by_unique): indexed only where set, like revoked_by.
    renewed_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="renews",
        verbose_name=_("remplacé par"),
        db_index=False,
    )
    last_used_at = models.DateTimeField(_("dernière utilisation"), null=True, blank=True)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now)
    # Set when a validated access request issued this token: its secret is generated at pick-up (shown once).
    pickup_pending_since = models.DateTimeField(_("en attente de récupération depuis"), null=True, blank=True)
    # The import run that created this token (its audit record); not indexed: bulk imports write it, the admin
    # reads it from the token.
    imported_by_run = models.ForeignKey(
        TokenImport,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tokens",
        verbose_name=_("importé par"),
        db_index=False,
    )

    objects = TokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("jeton")
        verbose_name_plural = _("jetons")
        ordering = ["expires_at", "id"]
        indexes = [
            models.Index(fields=["expires_at", "id"], name="token_expiry_idx"),
            models.Index(fields=["client", "label", "issued_at"], name="token_client_label_issued_idx"),
            models.Index(
                fields=["revoked_by"],
                name="token_revoked_by_idx",
                condition=models.Q(revoked_by__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["secret_digest"], name="token_secret_digest_unique"),
            models.UniqueConstraint(
                fields=["renewed_by"],
                name="token_renewed_by_unique",
                condition=models.Q(renewed_by__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label or self.secret_prefix} — {self.client.name}"

    def status_at(self, now: dt.datetime | None = None) -> str:
        """status_expression() in Python, for a token read without it."""
        now = now or timezone.now()
        if self.revoked_at is not None:
            return TokenStatus.REVOKED
        if self.expires_at <= now:
            return TokenStatus.EXPIRED
        if self.renewed_by_id is not None:
            return TokenStatus.SUPERSEDED
        if self.expires_at < expiring_horizon(now):
            return TokenStatus.EXPIRING
        return TokenStatus.ACTIVE

    @property
    def status(self) -> str:
        """The status annotated by `with_status()` when the row came from it, else derived now."""
        return self.__dict__.get("_status") or self.status_at()

    @status.setter
    def status(self, value: str) -> None:  # lets `with_status()` annotate rows
        self.__dict__["_status"] = value

    @property
    def days_left(self) -> int:
        return validity.days_left(self.expires_at)

    def is_usable(self, now: dt.datetime | None = None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or timezone.now())


class TokenLink(models.Model):
    """A token's link to a privilege (TokenPrivilege) or a contact (TokenContact), one row per pair.

    Indexed by the unique (token, privilege|contact) pair, whose leading column serves a token's links; a contact's
    links by contact too (deleting a contact), a privilege's by no index (a few dozen privileges share millions of
    links). Every index left out is one entry fewer to write per imported link. The tables and constraint names are
    the ones Django gave the links when it created them itself; like those, neither side has a reverse accessor.
    """

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        linked = next(f for f in self._meta.concrete_fields if f.is_relation and f.name != "token")
        return f"{self.token_id} — {getattr(self, linked.attname)}"


class TokenPrivilege(TokenLink):
    privilege = models.ForeignKey(Privilege, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        db_table = "tokens_token_privileges"
        verbose_name = _("privilège d'un jeton")
        verbose_name_plural = _("privilèges des jetons")
        constraints = [
            models.UniqueConstraint(
                fields=["token", "privilege"],
                name="tokens_token_privileges_token_id_privilege_id_fdf877d5_uniq",
            )
        ]


class TokenContact(TokenLink):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")

    class Meta:
        db_table = "tokens_token_contacts"
        verbose_name = _("contact d'un jeton")
        verbose_name_plural = _("contacts des jetons")
        constraints = [
            models.UniqueConstraint(
                fields=["token", "contact"], name="tokens_token_contacts_token_id_contact_id_14309766_uniq"
            )
        ]


class TokenEvent(models.Model):
    """Audit trail of everything done to a token."""

    class Kind(models.TextChoices):
        ISSUED = "issued", _("émis")
        REVOKED = "revoked", _("révoqué")
        REVEALED = "revealed", _("secret affiché")
        REGENERATED = "regenerated", _("secret régénéré")
        SUPERSEDED = "superseded", _("remplacé")
        UPDATED = "updated", _("modifié")
        PRIVILEGE_REMOVED = "privilege_removed", _("privilège supprimé du catalogue")
        CONTACT_REMOVED = "contact_removed", _("contact supprimé")
        EXPOSED = "exposed", _("secret exposé")

    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    at = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = _("événement")
        verbose_name_plural = _("journal des jetons")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["token", "at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} — {self.at:%Y-%m-%d %H:%M}"


class MembershipSource(models.TextChoices):
    CONTACT = "contact", _("contact ayant prouvé son adresse")
    ADMIN = "admin", _("accordé par un administrateur")


class ClientMembershipQuerySet(models.QuerySet):
    def effective(self):
        """Memberships that give access now: granted by an admin, or proved by someone who is still a contact (with
        that same address) of one of the client's tokens."""
        still_contact = Contact.objects.filter(
            client=OuterRef("client"), email=OuterRef("email"), tokens__client=OuterRef("client")
        )
        return self.filter(
            Q(source=MembershipSource.ADMIN) | (Q(source=MembershipSource.CONTACT) & Exists(still_contact))
        )


class ClientMembership(models.Model):
    """A person's access to a client: proved as a contact (`email`: the address they proved) or granted by an admin."""

    # Indexed by client_membership_unique (client first); the user's clients by the user foreign key's index.
    client = models.ForeignKey(
        Client, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("client"), db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="client_memberships",
        verbose_name=_("utilisateur"),
    )
    source = models.CharField(_("origine de l'accès"), max_length=16, choices=MembershipSource.choices)
    email = models.EmailField(_("adresse prouvée"), blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("accordé par"),
    )
    created_at = models.DateTimeField(_("depuis le"), default=timezone.now)

    objects = ClientMembershipQuerySet.as_manager()

    class Meta:
        verbose_name = _("accès à un client")
        verbose_name_plural = _("accès aux clients")
        ordering = ["client", "user"]
        constraints = [
            models.UniqueConstraint(fields=["client", "user"], name="client_membership_unique"),
            # No default: `client.members.add(user)` without a source fails instead of granting anything.
            models.CheckConstraint(
                condition=Q(source__in=MembershipSource.values), name="client_membership_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.client.name} ({self.get_source_display()})"


class ClientMembershipEvent(models.Model):
    """Audit trail of access to clients: grants, proofs and removals, with who did it."""

    class Kind(models.TextChoices):
        PROVED = "proved", _("adresse prouvée par un contact")
        GRANTED = "granted", _("accordé par un administrateur")
        REMOVED = "removed", _("retiré par un administrateur")

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="membership_events")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    email = models.EmailField(_("adresse"))  # the person's address at the time (the account may be deleted)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    source = models.CharField(max_length=16, choices=MembershipSource.choices, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True)

    class Meta:
        verbose_name = _("événement d'accès")
        verbose_name_plural = _("journal des accès aux clients")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["client", "at"], name="client_membership_event_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} — {self.email} — {self.at:%Y-%m-%d %H:%M}"


# ------------------------------------------------------------------------------
# Access requests: a mutable request, immutable grants (after DataPass)
# ------------------------------------------------------------------------------

LEGAL_DOCUMENT_MAX_BYTES = 10 * 1024 * 1024


def validate_pdf(upload) -> None:
    """Extension .pdf, PDF magic bytes, at most ACCESS_REQUEST_DOCUMENT_MAX_BYTES."""
    from django.core.exceptions import ValidationError

    max_bytes = getattr(settings, "ACCESS_REQUEST_DOCUMENT_MAX_BYTES", LEGAL_DOCUMENT_MAX_BYTES)
    name = getattr(upload, "name", "") or ""
    if not name.lower().endswith(".pdf"):
        raise ValidationError(_("Le document doit être un fichier PDF (.pdf)."), code="pdf_extension")
    if upload.size > max_bytes:
        raise ValidationError(
            _("Le document dépasse la taille maximale de %(max)s Mo.") % {"max": max_bytes // (1024 * 1024)},
            code="pdf_size",
        )
    position = upload.tell() if hasattr(upload, "tell") else 0
    upload.seek(0)
    head = upload.read(5)
    upload.seek(position)
    if head != b"%PDF-":
        raise ValidationError(_("Le fichier envoyé n'est pas un PDF valide."), code="pdf_magic")


class AccessRequestQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(client_id__in=accessible_client_ids(user))

    def open(self):
        return self.filter(state__in=AccessRequest.OPEN_STATES)


class AccessRequest(models.Model):
    class Kind(models.TextChoices):
        NEW = "new", _("nouvelle demande")
        RENEWAL = "renewal", _("renouvellement")
        EXTENSION = "extension", _("extension du périmètre")

    class State(models.TextChoices):
        DRAFT = "draft", _("brouillon")
        SUBMITTED = "submitted", _("soumise")
        CHANGES_REQUESTED = "changes_requested", _("modifications demandées")
        VALIDATED = "validated", _("validée")
        REFUSED = "refused", _("refusée")
        ABANDONED = "abandoned", _("abandonnée")

    class LegalNature(models.TextChoices):
        LAW = "loi", _("loi")
        DECREE = "decret", _("décret")
        ORDER = "arrete", _("arrêté")
        DELIBERATION = "deliberation", _("délibération")
        CONVENTION = "convention", _("convention")
        OTHER = "autre", _("autre")

    OPEN_STATES = (State.DRAFT, State.SUBMITTED, State.CHANGES_REQUESTED)
    CONTACT_ROLES = ("requester", "technical", "business")

    public_id = models.UUIDField(_("identifiant public"), default=uuid.uuid4, unique=True, editable=False)
    client = models.ForeignKey(
        Client, on_delete=models.PROTECT, related_name="access_requests", verbose_name=_("client")
    )
    kind = models.CharField(_("type"), max_length=16, choices=Kind.choices, default=Kind.NEW)
    applicant = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="access_requests",
        verbose_name=_("déposée par"),
    )
    label = models.CharField(_("intitulé du projet"), max_length=255, blank=True)
    privileges = models.ManyToManyField(
        Privilege, related_name="access_requests", blank=True, verbose_name=_("privilèges demandés")
    )
    project_description = models.TextField(_("description du projet"), blank=True)
    legal_basis_nature = models.CharField(
        _("nature du cadre juridique"), max_length=16, choices=LegalNature.choices, blank=True
    )
    legal_basis_text = models.TextField(_("cadre juridique"), blank=True)
    legal_basis_url = models.URLField(_("lien vers le texte"), max_length=500, blank=True)
    legal_basis_document = models.FileField(
        _("document (PDF)"),
        upload_to="access_requests/%Y/%m/",
        blank=True,
        validators=[validate_pdf],
    )
    # Snapshot {"requester": {"name", "email", "phone"}, "technical": {...}, "business": {...}}.
    contacts = models.JSONField(_("contacts"), default=dict, blank=True)
    expected_volume = models.PositiveIntegerField(
        _("volumétrie attendue (appels/min)"), null=True, blank=True
    )
    token = models.ForeignKey(
        Token,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="access_requests",
        verbose_name=_("jeton renouvelé ou étendu"),
    )
    prefilled_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("pré-remplie depuis"),
    )
    issued_token = models.OneToOneField(
        Token,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="issuing_request",
        verbose_name=_("jeton délivré"),
    )
    state = models.CharField(_("état"), max_length=20, choices=State.choices, default=State.DRAFT)
    created_at = models.DateTimeField(_("créée le"), default=timezone.now)
    updated_at = models.DateTimeField(_("modifiée le"), default=timezone.now)
    submitted_at = models.DateTimeField(_("soumise le"), null=True, blank=True)
    decided_at = models.DateTimeField(_("décidée le"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("décidée par"),
    )
    # The field-by-field diff the instructor decided on, frozen at the decision (selectors.AccessRequestDiff data):
    # the baseline (a token's contacts, a pre-filled request) may change afterwards, the evidence must not.
    decision_diff = models.JSONField(
        _("différences au moment de la décision"), null=True, blank=True, editable=False
    )

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        verbose_name = _("demande d'accès")
        verbose_name_plural = _("demandes d'accès")
        ordering = ["-created_at", "-id"]
        permissions = [
            ("instruct_accessrequest", _("Peut instruire (valider, refuser) les demandes d'accès"))
        ]
        indexes = [models.Index(fields=["state", "kind", "submitted_at"], name="accessrequest_queue_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} — {self.client.name} ({self.get_state_display()})"

    @property
    def is_editable(self) -> bool:
        return self.state in (self.State.DRAFT, self.State.CHANGES_REQUESTED)

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    def contact(self, role: str) -> dict:
        return (self.contacts or {}).get(role) or {}


class AccessRequestEvent(models.Model):
    """Audit trail of an access request: who did what, when, and why."""

    class Kind(models.TextChoices):
        CREATED = "created", _("créée")
        UPDATED = "updated", _("modifiée")
        SUBMITTED = "submitted", _("soumise")
        CHANGES_REQUESTED = "changes_requested", _("modifications demandées")
        VALIDATED = "validated", _("validée")
        REFUSED = "refused", _("refusée")
        ABANDONED = "abandoned", _("abandonnée")
        MESSAGE = "message", _("message")

    access_request = models.ForeignKey(
        AccessRequest, on_delete=models.CASCADE, related_name="events", verbose_name=_("demande d'accès")
    )
    kind = models.CharField(_("événement"), max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("par")
    )
    at = models.DateTimeField(_("date"), default=timezone.now)
    from_state = models.CharField(
        _("état avant"), max_length=20, blank=True, choices=AccessRequest.State.choices
    )
    to_state = models.CharField(
        _("état après"), max_length=20, blank=True, choices=AccessRequest.State.choices
    )
    reason = models.TextField(_("motif"), blank=True)
    data = models.JSONField(_("données"), default=dict, blank=True)

    class Meta:
        verbose_name = _("événement de demande")
        verbose_name_plural = _("journal des demandes")
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["access_request", "at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} — {self.at:%Y-%m-%d %H:%M}"


class AccessRequestMessage(models.Model):
    """The thread between the applicant's side and the instructors."""

    access_request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_instructor = models.BooleanField(default=False)
    body = models.TextField(_("message"))
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.author} — {self.at:%Y-%m-%d %H:%M}"


class PendingUpload(models.Model):
    """A legal-basis PDF received with a form that had other errors, kept so that it need not be attached again.

    Known by an opaque id, usable only by its owner in the session that uploaded it (tokens.uploads); stored under
    MEDIA_ROOT with a random name, deleted once used or after PENDING_UPLOAD_MAX_AGE.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    file = models.FileField(upload_to="pending_uploads/%Y/%m/")
    name = models.CharField(max_length=255)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("document en attente")
        verbose_name_plural = _("documents en attente")

    def __str__(self) -> str:
        return self.name


from .models_exposure import ExposureReporter, TokenExposure  # noqa: E402  (models of this app, own module)

__all__ = [
    "AccessRequest",
    "AccessRequestEvent",
    "AccessRequestMessage",
    "Client",
    "ClientMembership",
    "ClientMembershipEvent",
    "Contact",
    "Endpoint",
    "ExposureReporter",
    "MembershipSource",
    "Origin",
    "PendingUpload",
    "Privilege",
    "Token",
    "TokenEvent",
    "TokenExposure",
    "TokenStatus",
]
