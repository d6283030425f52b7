"""python manage.py ingest_calls PATH|-  (CONTRACT §3)."""

import os
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from availability.services import calls_ingest


class Progress:
    """A one-line progress display on stderr, only when it is a terminal, at most every half second."""

    def __init__(self, stream, total_bytes: int | None):
        self.stream = stream
        self.total_bytes = total_bytes
        self.started = self.last = time.monotonic()
        self.bytes_read = 0
        self.line_number = 0

    def count(self, lines):
        for line in lines:
            self.bytes_read += len(line)
            yield line

    def __call__(self, line_number: int, rejected: int, *, final: bool = False) -> None:
        self.line_number = line_number
        now = time.monotonic()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        rate = line_number / max(now - self.started, 1e-6)
        share = f" {100 * self.bytes_read / self.total_bytes:5.1f} %" if self.total_bytes else ""
        self.stream.write(
            f"\r{line_number:>12,} lignes{share}  {rate:>10,.0f} lignes/s  {rejected:,} rejetées"
        )
        if final:
            self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    help = "Ingère des appels d'API (JSON Lines : timestamp, endpoint, status) dans les compteurs de disponibilité."

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
        progress = Progress(stderr, total) if stderr.isatty() else None
        lines = progress.count(source) if progress else source

        def on_error(number: int, reason: str) -> None:
            if progress:
                stderr.write("\r\033[K")
            stderr.write(f"ligne {number} : {reason}\n")

        try:
            result = calls_ingest(lines=lines, on_error=on_error, progress=progress, chunk_lines=chunk_lines)
        finally:
            if source is not sys.stdin.buffer:
                source.close()
        if progress:
            progress(progress.line_number, result.rejected, final=True)
        self.stdout.write(f"{result.accepted} appels comptés, {result.rejected} lignes rejetées")
        if result.rejected:
            sys.exit(1)
