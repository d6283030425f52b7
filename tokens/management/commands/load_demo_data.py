"""Demo data for `make run`: logins, clients, contacts and tokens at every stage of their life.

Idempotent: users, clients and contacts are looked up by natural key, tokens by (client, label); a second run
creates nothing and changes nothing. Token secrets are printed only when the token is created (only their digest
is stored, they cannot be shown again). The logins are printed on every run.
"""

import datetime as dt
from dataclasses import dataclass

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from tokens import validity
from tokens.models import Client, Contact, Origin, Token
from tokens.selectors import privileges_resolve
from tokens.services.memberships import client_membership_grant
from tokens.services.registry import (
    ContactData,
    client_get_or_create,
    contacts_get_or_create,
    token_issue,
    token_revoke,
)

# Logins are email addresses (accounts.User); the names stay *_USERNAME: what is typed in the login field.
ADMIN_USERNAME = "admin@tokenmgr.localhost"
ADMIN_PASSWORD = "tokenmgr-admin"
INTEGRATOR_USERNAME = "integrateur@demo.localhost"
INTEGRATOR_PASSWORD = "tokenmgr-demo"

# (SIRET, name, integrator is a member). SIRETs verified by tokens.siret (La Poste: its own key rule).
CLIENTS = [
    ("21690123100011", "Ville de Lyon (démo)", True),
    ("13002526500013", "Direction interministérielle du numérique (démo)", True),
    ("21130055300016", "Ville de Marseille (démo)", False),
    ("35600000000048", "La Poste (démo)", False),
]


@dataclass(frozen=True)
class DemoToken:
    siret: str
    label: str
    privileges: tuple[str, ...]
    days_left: int | None = None  # expiry this many days from today (issue date derived)
    fresh: bool = False  # issued right now
    issued_on: dt.date | None = None  # or a fixed issue date
    origin: str | None = None  # None: derived from the issue date
    revoke_reason: str = ""
    renewal_label: str = ""  # issue today a renewal that supersedes this token


LYON, DINUM, MARSEILLE, LA_POSTE = (c[0] for c in CLIENTS)
TOKENS = [
    DemoToken(LYON, "Démo · jeton neuf", ("entreprises", "etablissements"), fresh=True),
    DemoToken(
        LYON, "Démo · échéance à 80 jours", ("entreprises", "attestations_fiscales_dgfip"), days_left=80
    ),
    DemoToken(LYON, "Démo · échéance à 20 jours", ("attestations_sociales_acoss",), days_left=20),
    DemoToken(
        LYON,
        "Démo · ancien jeton (remplacé)",
        ("entreprises", "exercices"),
        days_left=45,
        renewal_label="Démo · jeton de renouvellement",
    ),
    DemoToken(DINUM, "Démo · jeton expiré", ("associations",), days_left=-30),
    DemoToken(
        DINUM,
        "Démo · jeton révoqué",
        ("actes_bilans_inpi", "attestations_agefiph"),
        days_left=450,
        revoke_reason="Démo : secret publié par erreur dans un dépôt de code.",
    ),
    DemoToken(
        DINUM, "Démo · demarches-simplifiees.fr (2019)", ("entreprises",), issued_on=dt.date(2019, 3, 15)
    ),
    DemoToken(
        MARSEILLE,
        "Démo · demarches-simplifiees.fr encore valide",
        ("entreprises", "etablissements", "exercices"),
        days_left=60,
        origin=Origin.DEMARCHES_SIMPLIFIEES,
    ),
    DemoToken(
        LA_POSTE, "Démo · jeton La Poste", ("etablissements", "attestations_sociales_acoss"), days_left=400
    ),
]


def issue_moment(spec: DemoToken, today: dt.date) -> dt.datetime:
    """When to issue `spec` so that it has `days_left` today (or fewer, when the 18-month clamp shortens it)."""
    if spec.fresh:
        return timezone.now()
    if spec.issued_on is not None:
        day = spec.issued_on
    else:
        day = today + dt.timedelta(days=spec.days_left) - relativedelta(months=settings.TOKEN_VALIDITY_MONTHS)
    return dt.datetime.combine(day, dt.time(10, 0), tzinfo=validity.local_tz())


def contacts_for(siret: str, integrator: bool) -> list[ContactData]:
    slug = siret[:9]
    requester = INTEGRATOR_USERNAME if integrator else f"demandeur@{slug}.demo.localhost"
    return [
        ContactData(email=requester, name="Camille Intégratrice", role=Contact.Role.REQUESTER),
        ContactData(
            email=f"technique@{slug}.demo.localhost", name="Équipe technique", role=Contact.Role.TECHNICAL
        ),
        ContactData(email=f"metier@{slug}.demo.localhost", name="Service métier", role=Contact.Role.BUSINESS),
    ]


class Command(BaseCommand):
    help = "Charge les données de démonstration (idempotent) et affiche les identifiants de connexion."

    def handle(self, *args, **options):
        with transaction.atomic():
            admin, integrator = self._users()
            contacts = self._clients(admin, integrator)
            created = self._tokens(admin, contacts)
        base = settings.SITE_URL
        self.stdout.write(
            f"Données de démonstration : {created} jeton(s) créé(s), {Token.objects.count()} jeton(s) en base."
        )
        self.stdout.write(f"Connexion admin : {base}/admin/ — {ADMIN_USERNAME} / {ADMIN_PASSWORD}")
        self.stdout.write(
            f"Connexion intégrateur : {base}/connexion/ — {INTEGRATOR_USERNAME} / {INTEGRATOR_PASSWORD}"
        )

    def _user(self, email: str, password: str, **attrs):
        User = get_user_model()
        user, created = User.objects.get_or_create(email=email, defaults=attrs)
        changed = [k for k, v in attrs.items() if getattr(user, k) != v]
        for key in changed:
            setattr(user, key, attrs[key])
        if created or not user.check_password(password):
            user.set_password(password)
            changed.append("password")
        if changed:
            user.save()
        return user

    def _users(self):
        admin = self._user(
            ADMIN_USERNAME,
            ADMIN_PASSWORD,
            is_staff=True,
            is_superuser=True,
            is_active=True,
        )
        integrator = self._user(
            INTEGRATOR_USERNAME,
            INTEGRATOR_PASSWORD,
            first_name="Camille",
            last_name="Intégratrice",
            is_active=True,
        )
        return admin, integrator

    def _clients(self, admin, integrator) -> dict[str, list[Contact]]:
        contacts: dict[str, list[Contact]] = {}
        for siret, name, member in CLIENTS:
            client = client_get_or_create(siret=siret, name=name)
            if member:
                # Explicit grant (nobody proves a demo address by mail); a no-op when already granted.
                client_membership_grant(
                    client=client, user=integrator, by=admin, reason="Données de démonstration."
                )
            contacts[siret] = contacts_get_or_create(client=client, contacts=contacts_for(siret, member))
        return contacts

    def _tokens(self, admin, contacts: dict[str, list[Contact]]) -> int:
        today = validity.today()
        created = 0
        for spec in TOKENS:
            client = Client.objects.get(siret=spec.siret)
            token = Token.objects.filter(client=client, label=spec.label).first()
            if token is None:
                token = self._issue(
                    client, spec.label, spec, issue_moment(spec, today), spec.origin, contacts, admin
                )
                created += 1
                if spec.revoke_reason:
                    token_revoke(token=token, by=admin, reason=spec.revoke_reason)
            if (
                spec.renewal_label
                and not Token.objects.filter(client=client, label=spec.renewal_label).exists()
            ):
                self._issue(
                    client, spec.renewal_label, spec, timezone.now(), None, contacts, admin, replaces=token
                )
                created += 1
        return created

    def _issue(self, client, label, spec, issued_at, origin, contacts, admin, replaces=None) -> Token:
        issued = token_issue(
            client=client,
            privileges=privileges_resolve(codes=spec.privileges),
            issued_at=issued_at,
            origin=origin,
            label=label,
            contacts=contacts[client.siret],
            by=admin,
            replaces=replaces,
        )
        self.stdout.write(
            f"Nouveau jeton « {label} » ({client.name}) : {issued.secret}  (affiché une seule fois)"
        )
        return issued.token
