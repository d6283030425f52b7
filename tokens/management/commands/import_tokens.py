"""python manage.py import_tokens PATH|- [--dry-run] [--secrets-out PATH] (docs/commands.md)."""

import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from tokens.importing import COLUMNS, SecretsFileError, one_line, tokens_import

from .issue_token import one_line_parser


class Command(BaseCommand):
    help = (
        "Importe des jetons existants depuis un CSV UTF-8 (en-tête : "
        + ",".join(COLUMNS)
        + "), tout ou rien. Listes séparées par des espaces ; issued_at AAAA-MM-JJ (00:00) ou ISO 8601 (sans "
        "décalage : TIME_ZONE) ; origin vide : déduite de la date ; secret vide : un nouveau secret est généré et "
        "écrit « ligne,secret » dans --secrets-out. Les contacts sont enregistrés avec le rôle demandeur. "
        "Doublons (secret déjà connu, ou sans secret : même SIRET, libellé et date d'émission) ignorés et comptés."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        return one_line_parser(parser) if self._called_from_command_line else parser

    def add_arguments(self, parser):
        parser.add_argument("path", help="Fichier CSV, ou - pour l'entrée standard.")
        parser.add_argument("--dry-run", action="store_true", help="Valide et compte, n'écrit rien.")
        parser.add_argument(
            "--secrets-out",
            default=None,
            metavar="PATH",
            help="Nouveau fichier (créé en mode 0600 ; un chemin existant ou un lien symbolique est refusé) "
            "recevant « ligne,secret » pour chaque secret généré ; supprimé si l'import échoue.",
        )

    def handle(self, *args, **options):
        path = options["path"]
        interactive = self.stderr.isatty()
        started = time.monotonic()

        def on_error(line: int, message: str) -> None:
            if interactive:
                self.stderr.write("\r\033[K", ending="")
            self.stderr.write(f"ligne {line} : {one_line(message)}")

        def on_progress(message: str) -> None:
            self.stderr.write(f"\r\033[K{message} ({time.monotonic() - started:.0f} s)", ending="")
            self.stderr.flush()

        try:
            source = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"impossible de lire {path} : {exc.strerror}.") from None
        try:
            result = tokens_import(
                source=source,
                dry_run=options["dry_run"],
                secrets_out=options["secrets_out"],
                on_error=on_error,
                on_progress=on_progress if interactive else None,
                source_name="(entrée standard)" if path == "-" else path,
            )
        except SecretsFileError as exc:
            raise CommandError(f"{exc} ; rien n'a été importé.", returncode=2) from None
        except OSError as exc:
            raise CommandError(f"erreur d'entrée/sortie : {one_line(exc)}") from None
        except DatabaseError as exc:  # e.g. a constraint broken by a concurrent write: all of it rolled back
            raise CommandError(
                f"erreur de la base de données : {one_line(exc)} ; rien n'a été importé."
            ) from None
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        if interactive:
            self.stderr.write("\r\033[K", ending="")
        if result.errors:
            raise CommandError(f"{result.errors} ligne(s) invalide(s) : rien n'a été importé.", returncode=1)
        if options["verbosity"] >= 2 and result.phases:
            self.stderr.write("phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.phases.items()))
        suffix = " (dry run: nothing written)" if options["dry_run"] else ""
        self.stdout.write(f"imported: {result.imported}, duplicates: {result.duplicates}{suffix}")
        if result.generated and not options["secrets_out"] and not options["dry_run"]:
            self.stderr.write(
                f"attention : {result.generated} secret(s) généré(s) non conservé(s) (pas de --secrets-out)."
            )
