"""python manage.py ingest_calls PATH|-  (docs/commands.md).

A file is counted once whatever happens: its content is identified by its SHA-256 and each chunk's counters are
committed with the offset reached (availability.services.calls_file_ingest), so a run after a crash resumes where
the last one stopped and a file already ingested adds nothing. Standard input cannot be read twice: it is counted
in one transaction (a failed run counts nothing) and a content already ingested adds nothing either.
"""

import os
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from availability.services import AlreadyIngesting, calls_file_ingest, calls_stream_ingest


class Progress:
    """A one-line progress display on stderr, only when it is a terminal, at most every half second."""

    def __init__(self, stream, source, total_bytes: int | None):
        self.stream = stream
        self.source = source
        self.total_bytes = total_bytes
        self.started = self.last = time.monotonic()
        self.line_number = 0

    def __call__(self, line_number: int, rejected: int, *, final: bool = False) -> None:
        self.line_number = line_number
        now = time.monotonic()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        rate = line_number / max(now - self.started, 1e-6)
        share = ""
        if self.total_bytes:
            share = f" {100 * min(self.source.tell(), self.total_bytes) / self.total_bytes:5.1f} %"
        self.stream.write(
            f"\r{line_number:>12,} lignes{share}  {rate:>10,.0f} lignes/s  {rejected:,} rejetées"
        )
        if final:
            self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    help = (
        "Ingère des appels d'API (JSON Lines : timestamp, endpoint, status) dans les compteurs de disponibilité. "
        "Un fichier n'est jamais compté deux fois : relancée après une interruption, la commande reprend après "
        "le dernier lot enregistré ; un contenu déjà ingéré n'ajoute rien."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="fichier JSON Lines, ou - pour l'entrée standard")
        parser.add_argument("--chunk-lines", type=int, default=None, help="lignes agrégées par transaction")

    def handle(self, *args, path, chunk_lines, **options):
        if path == "-":
            source, total = sys.stdin.buffer, None
        else:
            try:
                source = open(path, "rb")  # noqa: SIM115 (closed below)
            except OSError as exc:
                raise CommandError(f"{path} : {exc.strerror}") from exc
            total = os.fstat(source.fileno()).st_size or None
        stderr = sys.stderr
        progress = Progress(stderr, source, total) if stderr.isatty() else None

        def on_error(number: int, reason: str) -> None:
            if progress:
                stderr.write("\r\033[K")
            stderr.write(f"ligne {number} : {reason}\n")

        ingest = calls_stream_ingest if path == "-" else calls_file_ingest
        try:
            outcome = ingest(
                source=source,
                name="(entrée standard)" if path == "-" else path,
                on_error=on_error,
                progress=progress,
                chunk_lines=chunk_lines,
            )
        except AlreadyIngesting:
            raise CommandError(
                "ce contenu est en cours d'ingestion par une autre commande (ou, pour l'entrée standard, a été "
                "ingéré en partie depuis un fichier : relancez la commande sur ce fichier) ; rien n'a été compté."
            ) from None
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        result = outcome.result
        if progress and not outcome.already_done:
            progress(progress.line_number, result.rejected, final=True)
        if outcome.already_done:
            self.stdout.write(
                f"contenu déjà ingéré (SHA-256 {outcome.fingerprint[:16]}…) : rien n'a été ajouté "
                f"({outcome.total_accepted} appels comptés, {outcome.total_rejected} lignes rejetées alors)"
            )
            return
        if outcome.resumed_at_line:
            self.stdout.write(
                f"reprise à la ligne {outcome.resumed_at_line} (lignes précédentes déjà comptées)"
            )
        self.stdout.write(f"{result.accepted} appels comptés, {result.rejected} lignes rejetées")
        if outcome.resumed_at_line:
            self.stdout.write(
                f"total du fichier : {outcome.total_accepted} appels comptés, "
                f"{outcome.total_rejected} lignes rejetées"
            )
        if outcome.total_rejected:
            sys.exit(1)
