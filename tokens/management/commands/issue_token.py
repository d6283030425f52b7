"""python manage.py issue_token --siret SIRET --privileges CODE[,CODE...] [...] (docs/commands.md)."""

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from tokenmgr.errors import ApplicationError
from tokens.importing import (
    IMPORT_CONTACT_ROLE,
    LABEL_MAX,
    NAME_MAX,
    InvalidValue,
    check_emails,
    check_origin,
    check_privileges,
    check_siret,
    check_text,
    one_line,
    parse_issued_at,
    split_list,
)
from tokens.models import Privilege
from tokens.services import registry as services


def one_line_parser(parser):
    """Argument errors on the command line: one line on stderr and exit status 2, no usage dump."""

    def error(message):
        sys.stderr.write(f"{parser.prog}: {one_line(message)}\n")
        sys.exit(2)

    parser.error = error
    return parser


class Command(BaseCommand):
    help = (
        "Émet un jeton pour le client SIRET (créé s'il n'existe pas) et affiche son secret seul sur la dernière "
        "ligne. Refus (SIRET, privilège, date, origine ou e-mail invalide) : une ligne sur stderr, code de sortie "
        "non nul, rien n'est écrit."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        return one_line_parser(parser) if self._called_from_command_line else parser

    def add_arguments(self, parser):
        parser.add_argument("--siret", required=True, help="SIRET du client (14 chiffres, clé de Luhn).")
        parser.add_argument(
            "--privileges",
            required=True,
            help="Codes de privilèges séparés par des virgules (ou des espaces).",
        )
        parser.add_argument("--name", default="", help="Nom du client, s'il faut le créer.")
        parser.add_argument(
            "--issued-at",
            default=None,
            help=(
                "Date d'émission AAAA-MM-JJ (ce jour à 00:00 dans TIME_ZONE : le jeton expire le même jour "
                "18 mois plus tard à 00:00) ou ISO 8601 ; par défaut : maintenant."
            ),
        )
        parser.add_argument(
            "--origin",
            default=None,
            help="api_gouv ou demarches_simplifiees ; par défaut demarches_simplifiees si émis avant le "
            "2019-09-01, sinon api_gouv.",
        )
        parser.add_argument(
            "--contact",
            action="append",
            default=[],
            metavar="EMAIL",
            help="E-mail d'un contact du jeton (rôle demandeur) ; répétable.",
        )
        parser.add_argument("--label", default="", help="Libellé du jeton.")

    def handle(self, *args, **options):
        now = timezone.now()
        try:
            # Validate everything before writing anything.
            siret = check_siret(options["siret"])
            name = check_text(options["name"] or "", what="nom", max_length=NAME_MAX)
            label = check_text(options["label"] or "", what="libellé", max_length=LABEL_MAX)
            catalogue = dict(Privilege.objects.values_list("code", "id"))
            privilege_ids = check_privileges(split_list(options["privileges"]), catalogue)
            issued_at = (
                now if options["issued_at"] is None else parse_issued_at(options["issued_at"], now=now)
            )
            origin = check_origin(options["origin"], issued_at)
            emails = check_emails(e for value in options["contact"] for e in split_list(value))
        except InvalidValue as exc:
            raise CommandError(one_line(exc)) from None
        try:
            with transaction.atomic():
                client = services.client_get_or_create(siret=siret, name=name)
                contacts = services.contacts_get_or_create(
                    client=client,
                    contacts=[services.ContactData(email=e, role=IMPORT_CONTACT_ROLE) for e in emails],
                )
                privileges = list(Privilege.objects.filter(id__in=privilege_ids))
                privileges.sort(key=lambda p: privilege_ids.index(p.id))
                issued = services.token_issue(
                    client=client,
                    privileges=privileges,
                    issued_at=issued_at,
                    origin=origin,
                    label=label,
                    contacts=contacts,
                )
        except ApplicationError as exc:
            raise CommandError(one_line(exc.message)) from None
        token = issued.token
        self.stdout.write(
            f"Jeton {token.public_id} émis pour {client.name} ({client.siret}), origine {token.origin}, "
            f"expire le {timezone.localtime(token.expires_at):%Y-%m-%d %H:%M %Z}. Secret (affiché une seule fois) :"
        )
        self.stdout.write(issued.secret)
