# ruff: noqa: S608 -- SQL is built from model metadata and constants; values always go as parameters.
"""Validation shared by `issue_token` and `import_tokens`, and the bulk import itself (docs/commands.md).

The import is one streaming pass and one transaction:

1. each CSV row is parsed and validated in Python (bounded caches only: constant memory); every bad row is
   reported with its line number as it is met, and writing stops at the first one (all is rolled back);
2. valid rows go by chunks of CHUNK_ROWS to a ChunkWriter: a temporary staging table (PostgreSQL `COPY`; batched
   inserts elsewhere, e.g. SQLite under `make run`), then set-based SQL that drops the duplicates (secret already
   known, or, without a secret, the same (SIRET, label, issued_at), in the database or earlier in the file) and
   inserts clients, contacts, tokens (each pointing to the run's TokenImport audit record), their privileges and
   contacts, with a constant number of statements per chunk. On PostgreSQL a worker thread writes a chunk while the next one is
   validated, so that Python and the database work at the same time; the client and contact ids that earlier
   chunks resolved are kept (KnownIds, bounded) and staged with the next chunks' rows, so that the database
   only resolves the others.

A row without a secret gets a new one, derived as HMAC-SHA256(run key, line number) with a random 256-bit run key
that lives only in memory: its digest is staged, and the secret itself is rebuilt from the line number only for
the rows actually imported, when `--secrets-out` is written. No plain secret ever reaches the database.
"""

import contextlib
import csv
import datetime as dt
import getpass
import hashlib
import io
import itertools
import logging
import operator
import os
import re
import secrets as secrets_module
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.identity import InvalidEmail, ascii_lower, normalize_email

from . import credentials, validity
from .models import Client, Contact, Origin, Privilege, Token, TokenEvent, TokenImport
from .siret import siret_error

COLUMNS = ("siret", "name", "label", "privileges", "issued_at", "origin", "contacts", "secret")
IMPORT_CONTACT_ROLE = Contact.Role.REQUESTER  # imported contacts: the people who asked for the token
MAX_SECRET_LENGTH = 4096  # what /v2/privileges accepts
MIN_ISSUED_AT = dt.date(1970, 1, 1)
NAME_MAX = Client._meta.get_field("name").max_length
LABEL_MAX = Token._meta.get_field("label").max_length
EMAIL_MAX = Contact._meta.get_field("email").max_length
CHUNK_ROWS = 50_000  # rows validated (and kept in memory) while the previous chunk is written
WORKER_SWITCH_INTERVAL = 0.0005  # seconds: sys.setswitchinterval while a PostgreSQL import runs

logger = logging.getLogger(__name__)


class InvalidValue(ValueError):
    """One clear, single-line reason why a value is refused (French, shown to the operator)."""


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def shown(value: str, limit: int = 60) -> str:
    """A user value quoted for an error message, on one line and bounded."""
    value = value if len(value) <= limit else value[:limit] + "…"
    return repr(value)


# --------------------------------------------------------------------------------------------------
# Value checks (issue_token and import_tokens validate alike)
# --------------------------------------------------------------------------------------------------


def check_siret(value: str) -> str:
    value = value.strip()
    error = siret_error(value)
    if error:
        raise InvalidValue(f"SIRET {shown(value)} invalide : {error}.")
    return value


def check_text(value: str, *, what: str, max_length: int) -> str:
    value = value.strip()
    if len(value) > max_length:
        raise InvalidValue(f"{what} trop long ({len(value)} caractères, {max_length} au plus).")
    return value


def check_origin(value: str | None, issued_at: dt.datetime) -> str:
    value = (value or "").strip()
    if not value:
        return validity.default_origin(issued_at)
    if value not in Origin.values:
        raise InvalidValue(f"origine {shown(value)} inconnue : {' ou '.join(sorted(Origin.values))} attendu.")
    return value


# A strict subset of what normalize_email accepts (plain ASCII dot-atom @ hostname), checked first because it is
# much faster; anything else goes through normalize_email.
_SIMPLE_EMAIL = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def check_email(value: str) -> str:
    """The address in its normalized form (accounts.identity), the only form contacts are stored in."""
    value = value.strip()
    if len(value) > EMAIL_MAX:
        raise InvalidValue(f"adresse e-mail trop longue : {shown(value)}.")
    if _SIMPLE_EMAIL.fullmatch(value):
        return ascii_lower(value)  # what normalize_email gives for a plain ASCII address, without its checks
    try:
        return normalize_email(value)
    except InvalidEmail as error:
        raise InvalidValue(f"adresse e-mail invalide : {shown(value)} ({error}).") from None


def check_emails(values: Iterable[str]) -> list[str]:
    """Valid addresses, normalized, each once."""
    return list(dict.fromkeys(check_email(value) for value in values))


def parse_issued_at(value: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """`YYYY-MM-DD` (that day at 00:00 in TIME_ZONE) or ISO 8601 (without offset: read in TIME_ZONE) → aware UTC.

    A date means the start of that day, so that the expiry is that same day 18 months later at 00:00: the token
    works on every calendar day from its issue day up to the day before its expiry day.
    """
    value = value.strip()
    if not value:
        raise InvalidValue("date d'émission manquante (AAAA-MM-JJ ou ISO 8601).")
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            if day < MIN_ISSUED_AT:
                raise InvalidValue(f"date d'émission {shown(value)} trop ancienne.")
            moment = validity.start_of_day(day)
        else:
            moment = dt.datetime.fromisoformat(value)
            if moment.date() < MIN_ISSUED_AT:
                raise InvalidValue(f"date d'émission {shown(value)} trop ancienne.")
            if timezone.is_naive(moment):
                moment = moment.replace(tzinfo=validity.local_tz())
            moment = moment.astimezone(dt.UTC)
    except InvalidValue:
        raise
    except (ValueError, OverflowError):
        raise InvalidValue(
            f"date d'émission {shown(value)} invalide (AAAA-MM-JJ ou ISO 8601 attendu)."
        ) from None
    if moment > (now or timezone.now()):
        raise InvalidValue(f"date d'émission {shown(value)} dans le futur.")
    return moment


def split_list(value: str | None) -> list[str]:
    """Space-separated list (commas are tolerated as separators too)."""
    return (value or "").replace(",", " ").split()


def check_privileges(codes: Iterable[str], catalogue: dict[str, int]) -> tuple[int, ...]:
    """Privilege ids for `codes` (deduplicated, order kept); InvalidValue naming every unknown code."""
    wanted = list(dict.fromkeys(c for c in codes if c))
    if not wanted:
        raise InvalidValue("au moins un privilège est requis.")
    unknown = [c for c in wanted if c not in catalogue]
    if unknown:
        raise InvalidValue(f"privilège inconnu : {', '.join(shown(c, 40) for c in unknown)}.")
    return tuple(catalogue[c] for c in wanted)


def check_secret(value: str) -> str:
    if len(value) > MAX_SECRET_LENGTH:
        raise InvalidValue(f"secret trop long ({MAX_SECRET_LENGTH} caractères au plus).")
    if " " in value or not value.isprintable():
        raise InvalidValue("le secret contient des espaces ou des caractères non imprimables.")
    return value


# --------------------------------------------------------------------------------------------------
# Expiry, fast: expiry_for() is the rule; this variant caches the calendar step per local date.
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def _shifted_day(day: dt.date, months: int) -> dt.date:
    return validity.add_months(validity.start_of_day(day), months).astimezone(validity.local_tz()).date()


def fast_expiry(issued_at: dt.datetime, tz=None, months: int | None = None) -> dt.datetime:
    """Same result as validity.expiry_for (tested equal), a few times faster for millions of rows."""
    tz = tz or validity.local_tz()
    local = issued_at.astimezone(tz)
    day = _shifted_day(local.date(), months or settings.TOKEN_VALIDITY_MONTHS)
    return dt.datetime.combine(day, local.time()).replace(tzinfo=tz).astimezone(dt.UTC)


# --------------------------------------------------------------------------------------------------
# Row validation
# --------------------------------------------------------------------------------------------------

ORIGINS = frozenset(Origin.values)
# Columns of the staging table, in the order of the tuples `RowValidator.validate` returns.
STAGE_COLUMNS = (
    "line",
    "siret",
    "name",
    "label",
    "issued_at",
    "expires_at",
    "origin",
    "privs",  # privilege ids, space-separated
    "contacts",  # e-mails, space-separated
    "has_secret",
    "digest",
    "prefix",
)
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """A value in PostgreSQL's COPY text format."""
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


class _Sha256Hmac:
    """HMAC-SHA256 with the key schedule done once: the same digests as `hmac`, about twice as fast per call."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class KnownIds:
    """Client and contact ids this run has resolved, and locked, so far (PostgreSQL only; bounded).

    The worker fills it as it writes each chunk; the reading thread stages the next chunks' rows with the ids it
    finds here, and the writer resolves (probes, creates, locks) only the others. Only clients with a real name
    are kept: a placeholder name (the SIRET) may still be replaced by a later row. Contacts are keyed by their
    client and their normalized e-mail (check_email), compared as is on both sides. Ids stay valid until the end of the run: its transaction created or locked them.
    """

    def __init__(self, *, max_clients: int = 131_072, max_contacts: int = 262_144) -> None:
        self.clients: dict[str, int] = {}
        self.contacts: dict[str, int] = {}
        self.max_clients = max_clients
        self.max_contacts = max_contacts

    @staticmethod
    def contact_key(client_id: int, email: str) -> str:
        return f"{client_id} {email}"

    def add_clients(self, pairs: Iterable[tuple[str, int]]) -> None:
        room = self.max_clients - len(self.clients)
        self.clients.update(itertools.islice(pairs, max(room, 0)))

    def add_contacts(self, triples: Iterable[tuple[int, str, int]]) -> None:
        room = self.max_contacts - len(self.contacts)
        key = self.contact_key
        found = ((key(c, e), i) for c, e, i in triples if i is not None)
        self.contacts.update(itertools.islice(found, max(room, 0)))


class RowValidator:
    """Validates CSV rows into staging tuples (or COPY text lines); caches are bounded so memory stays constant."""

    def __init__(
        self,
        header: list[str],
        *,
        now: dt.datetime,
        run_key: bytes,
        copy_format: bool = False,
        known: KnownIds | None = None,
    ) -> None:
        names = [h.strip().lower() for h in header]
        duplicated = sorted({n for n in names if n and names.count(n) > 1})
        if duplicated:
            raise InvalidValue(f"colonne(s) en double : {', '.join(duplicated)}.")
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise InvalidValue(
                f"colonne(s) manquante(s) : {', '.join(missing)} (en-tête attendu : {','.join(COLUMNS)})."
            )
        self.width = len(names)
        self._pick = operator.itemgetter(*(names.index(c) for c in COLUMNS))
        self.now = now
        self.copy_format = copy_format
        self.known = known or KnownIds(max_clients=0, max_contacts=0)
        self.catalogue = dict(Privilege.objects.values_list("code", "id"))
        self.tz = validity.local_tz()
        self.months = settings.TOKEN_VALIDITY_MONTHS
        if copy_format:
            self.format_datetime = dt.datetime.isoformat
        else:
            self.format_datetime = connection.ops.adapt_datetimefield_value
        self._digest = _Sha256Hmac(settings.TOKEN_DIGEST_KEY.encode())  # == credentials.digest
        self._run = _Sha256Hmac(run_key)
        # Bounded caches: SIRETs, privilege lists, dates and e-mails repeat a lot across rows.
        self._siret = lru_cache(maxsize=131_072)(check_siret)
        self._privileges = lru_cache(maxsize=4096)(self._privileges_uncached)
        self._issued = lru_cache(maxsize=131_072)(self._issued_uncached)
        self._emails = lru_cache(maxsize=131_072)(self._emails_uncached)
        self._text = lru_cache(maxsize=131_072)(copy_text) if copy_format else str
        # COPY format only: repeats within the current chunk, found here rather than by sorting in the database
        # (bounded: one chunk; the caller calls new_chunk() when it hands a chunk over).
        self._chunk_digests: set[str] = set()
        self._chunk_keys: set[tuple] = set()

    def new_chunk(self) -> None:
        self._chunk_digests = set()
        self._chunk_keys = set()

    def _privileges_uncached(self, raw: str) -> str:
        return " ".join(map(str, check_privileges(split_list(raw), self.catalogue)))

    def _issued_uncached(self, raw: str) -> tuple[str, str, str, dt.datetime]:
        issued = parse_issued_at(raw, now=self.now)
        local = issued.astimezone(self.tz)
        day = local.date()
        expires = (
            dt.datetime.combine(_shifted_day(day, self.months), local.time())
            .replace(tzinfo=self.tz)
            .astimezone(dt.UTC)
        )
        origin = (
            Origin.DEMARCHES_SIMPLIFIEES.value if day < validity.API_GOUV_SINCE else Origin.API_GOUV.value
        )
        fmt = self.format_datetime
        return fmt(issued), fmt(expires), origin, issued

    def _emails_uncached(self, raw: str) -> tuple[str, tuple[str, ...]]:
        emails = check_emails(split_list(raw))
        text = " ".join(emails)
        return (copy_text(text) if self.copy_format else text), tuple(emails)

    def _known_ids(self, siret: str, emails: tuple[str, ...]) -> str:
        """The `client_id` and `contact_ids` COPY fields: the ids known so far, or NULL (\\N) to resolve."""
        known = self.known
        client_id = known.clients.get(siret)
        if client_id is None:
            return "\\N\t\\N"
        if not emails:
            return f"{client_id}\t"
        contacts, key = known.contacts, known.contact_key
        ids = [contacts.get(key(client_id, e)) for e in emails]
        if None in ids:
            return f"{client_id}\t\\N"
        return f"{client_id}\t{' '.join(map(str, ids))}"

    def digest(self, secret: str) -> str:
        return self._digest.hexdigest(secret.encode())

    def generated_secret(self, line: int) -> str:
        """The secret of a row without one: same format as credentials.generate_secret (256 bits, checksum)."""
        return credentials.secret_from_bytes(self._run.digest(str(line).encode()))

    def validate(self, line: int, fields: list[str]) -> tuple | str:
        """The staging tuple of a row (STAGE_COLUMNS), or its COPY text line; InvalidValue if the row is bad."""
        if len(fields) != self.width:
            raise InvalidValue(f"{len(fields)} champ(s) au lieu de {self.width}.")
        siret, name, label, privileges, issued_at, origin, contacts, secret = self._pick(fields)
        siret = self._siret(siret)
        name, label = name.strip(), label.strip()
        if len(name) > NAME_MAX or len(label) > LABEL_MAX:
            check_text(name, what="nom", max_length=NAME_MAX)
            check_text(label, what="libellé", max_length=LABEL_MAX)
        privs = self._privileges(privileges)
        issued_text, expires_text, default_origin, issued = self._issued(issued_at)
        origin = origin.strip()
        if not origin:
            origin = default_origin
        elif origin not in ORIGINS:
            check_origin(origin, issued)  # raises the message
        emails, email_list = self._emails(contacts)
        secret = secret.strip()
        if secret:
            if len(secret) > MAX_SECRET_LENGTH or " " in secret or not secret.isprintable():
                check_secret(secret)
            has_secret = True
        else:
            secret = self.generated_secret(line)
            has_secret = False
        digest = self._digest.hexdigest(secret.encode())
        prefix = secret[: credentials.DISPLAY_PREFIX_LENGTH]
        if self.copy_format:
            # A repeat within the chunk: a given secret seen earlier, or, without a secret, a key seen earlier.
            key = (siret, label, issued)
            if has_secret:
                repeat = digest in self._chunk_digests
                self._chunk_digests.add(digest)
            else:
                repeat = key in self._chunk_keys
            self._chunk_keys.add(key)
            text = self._text
            return (
                f"{line}\t{siret}\t{text(name)}\t{text(label)}\t{issued_text}\t{expires_text}\t{origin}\t{privs}\t"
                f"{emails}\t{'t' if has_secret else 'f'}\t{digest}\t{copy_text(prefix)}\t{'t' if repeat else 'f'}\t"
                f"{self._known_ids(siret, email_list)}\n"
            )
        return (
            line,
            siret,
            name,
            label,
            issued_text,
            expires_text,
            origin,
            privs,
            emails,
            has_secret,
            digest,
            prefix,
        )


# --------------------------------------------------------------------------------------------------
# Reading: physical line numbers, UTF-8 checked line by line
# --------------------------------------------------------------------------------------------------


class BadEncoding(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class InvalidCsv(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_utf8 = operator.methodcaller("decode", "utf-8")


def read_rows(binary: io.BufferedIOBase) -> Iterator[tuple[int, list[str]]]:
    """(line number of the row's first physical line, fields), blank lines skipped; the header is line 1."""
    first = binary.readline()
    if not first:
        return
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise BadEncoding(1) from None
    reader = csv.reader(itertools.chain((text.removeprefix("\ufeff"),), map(_utf8, binary)), strict=True)
    last = 0
    try:
        for fields in reader:
            start = last + 1
            last = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            yield start, fields
    except UnicodeDecodeError:
        raise BadEncoding(reader.line_num + 1) from None
    except csv.Error as exc:
        raise InvalidCsv(last + 1, f"CSV mal formé : {one_line(exc)}.") from None


# --------------------------------------------------------------------------------------------------
# Set-based writes, one chunk of validated rows at a time
# --------------------------------------------------------------------------------------------------


def _t(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


TEMPORARY_TABLES = ("imp_row", "imp_new", "imp_first", "imp_dropped", "imp_contact")


class ChunkWriter:
    """Writes chunks of validated rows with a constant number of set-based statements per chunk.

    Each chunk is staged in a temporary table (PostgreSQL `COPY`; batched inserts elsewhere, e.g. SQLite under
    `make run`), its duplicates are dropped (secret already known, or, without a secret, the same (SIRET, label,
    issued_at) in the database, earlier in the chunk, or in a row dropped from an earlier chunk: earlier chunks'
    imported rows are in the database already), then clients, contacts, tokens (pointing to the run's TokenImport
    audit record), their privileges and contacts are inserted.

    On PostgreSQL, chunks are written by a worker thread on the raw connection while the next chunk is validated:
    the two overlap. Kept rows draw their token id from the token table's sequence, so that privileges and contacts
    are inserted without joining back on the token table, and public ids come from gen_random_uuid(). Rows come
    staged with the client and contact ids of `known` where it has them; the writer resolves the others (one
    probe per distinct client or contact, locked FOR KEY SHARE) and adds them to `known` for the next chunks.
    """

    def __init__(self, cursor, *, now: dt.datetime, run_id: int, known: KnownIds | None = None) -> None:
        self.cursor = cursor
        self.known = known or KnownIds(max_clients=0, max_contacts=0)
        self.run_id = run_id
        self.pg = connection.vendor == "postgresql"
        self.now = connection.ops.adapt_datetimefield_value(now)
        self.token, self.client, self.contact = _t(Token), _t(Client), _t(Contact)
        self.event, self.privilege = _t(TokenEvent), _t(Privilege)
        self.token_privileges = connection.ops.quote_name(Token.privileges.through._meta.db_table)
        self.token_contacts = connection.ops.quote_name(Token.contacts.through._meta.db_table)
        self.role = IMPORT_CONTACT_ROLE.value
        self.replica = False
        self.dropped = 0  # rows of earlier chunks in imp_dropped
        self._constraints: list[str] = []
        # Seconds spent per phase, summed over the chunks (logged at the end).
        self.phases: dict[str, float] = {}
        ts = "timestamp with time zone" if self.pg else "datetime"
        on_commit = " ON COMMIT DROP" if self.pg else ""
        columns = (
            f"line integer NOT NULL, siret varchar(14) NOT NULL, name varchar(255) NOT NULL, "
            f"label varchar(255) NOT NULL, issued_at {ts} NOT NULL, expires_at {ts} NOT NULL, "
            f"origin varchar(32) NOT NULL, privs text NOT NULL, contacts text NOT NULL, has_secret boolean NOT NULL, "
            f"digest varchar(64) NOT NULL, prefix varchar(16) NOT NULL"
        )
        for table in TEMPORARY_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        if self.pg:
            # Rows are staged straight into imp_new, each drawing its token id from the token table's sequence
            # (so that privileges and contacts need no join back on the token table), and duplicates are
            # deleted in place; `repeat` marks the repeats within the chunk, found by the validator.
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [Token._meta.db_table])
            self.sequence = cursor.fetchone()[0]
            # client_id and contact_ids (space-separated) come staged when the reading thread found them in
            # `known`; else NULL, and the writer resolves them.
            cursor.execute(
                f"CREATE TEMPORARY TABLE imp_new ({columns}, repeat boolean NOT NULL, client_id bigint, "
                f"contact_ids text, token_id bigint NOT NULL DEFAULT nextval('{self.sequence}')){on_commit}"
            )
            # The chunk's distinct contacts still to resolve (client, e-mail as the contact index compares it)
            # and their ids.
            cursor.execute(
                "CREATE TEMPORARY TABLE imp_contact (client_id bigint NOT NULL, "
                f"email_key text NOT NULL, email varchar(254) NOT NULL, contact_id bigint){on_commit}"
            )
        else:
            cursor.execute(f"CREATE TEMPORARY TABLE imp_row ({columns}){on_commit}")
            cursor.execute(f"CREATE TEMPORARY TABLE imp_new ({columns}){on_commit}")
        cursor.execute(
            "CREATE TEMPORARY TABLE imp_first (siret varchar(14) NOT NULL, name varchar(255) NOT NULL, "
            f"client_id bigint){on_commit}"
        )
        cursor.execute(
            f"CREATE TEMPORARY TABLE imp_dropped (siret varchar(14) NOT NULL, label varchar(255) NOT NULL, "
            f"issued_at {ts} NOT NULL){on_commit}"
        )
        if self.pg:
            self._checks_setup()

    # ---- foreign keys (PostgreSQL) ---------------------------------------------------------------------------

    def _checks_setup(self) -> None:
        """Per-row foreign-key checks: skipped when the role may, else run per statement, not all at commit.

        Each foreign key written here comes from a join on the referenced table inside this transaction: the
        privileges, and each chunk's clients and contacts, are locked FOR KEY SHARE first (no one can delete them
        before we commit), and token ids are this transaction's own rows. The per-row RI triggers would re-check
        millions of rows one by one, so they are skipped with `session_replication_role = replica` when the role
        may set it (superuser, or PostgreSQL 15+ `GRANT SET ON PARAMETER session_replication_role`). Otherwise they
        run, but at the end of each statement (the constraints are set IMMEDIATE for the import): their work
        overlaps the validation of the next chunk instead of piling up, in memory, until the commit.
        """
        cursor = self.cursor
        cursor.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {self.privilege} FOR KEY SHARE) x")
        cursor.execute("SELECT current_setting('session_replication_role')")
        self._previous_role = cursor.fetchone()[0]
        try:
            with transaction.atomic():
                cursor.execute("SET LOCAL session_replication_role = replica")
            self.replica = True
            return
        except (DatabaseError, connection.Database.Error):  # this cursor is psycopg's own
            pass
        tables = [
            m._meta.db_table
            for m in (Token, Token.privileges.through, Token.contacts.through, TokenEvent, Contact, Client)
        ]
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' AND condeferrable AND condeferred "
            "AND conrelid = ANY(%s::regclass[])",
            [tables],
        )
        self._constraints = [connection.ops.quote_name(r[0]) for r in cursor.fetchall()]
        if self._constraints:
            cursor.execute(f"SET CONSTRAINTS {', '.join(self._constraints)} IMMEDIATE")

    def finish(self) -> None:
        """Restore the session as it was (the temporary tables go at commit on PostgreSQL)."""
        cursor = self.cursor
        if self.pg:
            if self.replica:
                cursor.execute(
                    "SELECT set_config('session_replication_role', %s, true)", [self._previous_role]
                )
            if self._constraints:
                cursor.execute(f"SET CONSTRAINTS {', '.join(self._constraints)} DEFERRED")
        for table in TEMPORARY_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")

    # ---- one chunk -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def stage(self, rows: list) -> int:
        """Stage `rows` (the previous chunk must be written); returns how many.

        Called by the reading thread, not the worker: a COPY is many small socket writes, and a worker thread
        that must win the GIL back from the busy reading thread after each one (up to sys.getswitchinterval(),
        5 ms, each time) took ~0.8 s per chunk instead of ~0.05 s.
        """
        with self._phase("stage (COPY)"):
            if self.pg:
                self.cursor.execute("TRUNCATE imp_new, imp_first, imp_contact")
                with self.cursor.copy(
                    f"COPY imp_new ({', '.join(STAGE_COLUMNS)}, repeat, client_id, contact_ids) FROM STDIN"
                ) as copy:
                    copy.write("".join(rows).encode())
            else:
                self._stage(rows)
        return len(rows)

    def write(self, staged: int) -> tuple[int, int, list[int]]:
        """Write the `staged` rows; returns (staged, imported, imported line numbers without a secret)."""
        cursor = self.cursor
        imported = self._drop_duplicates_pg(staged) if self.pg else self._select_new()
        if imported < staged and not self.pg:
            cursor.execute(
                "INSERT INTO imp_dropped (siret, label, issued_at) SELECT r.siret, r.label, r.issued_at "
                "FROM imp_row r WHERE NOT EXISTS (SELECT 1 FROM imp_new n WHERE n.line = r.line)"
            )
            self.dropped += cursor.rowcount
        if imported:
            with self._phase("clients"):
                self._write_clients()
            with self._phase("contacts"):
                self._write_contacts()
            self._write_tokens()
        with self._phase("generated lines"):
            cursor.execute("SELECT line FROM imp_new WHERE NOT has_secret ORDER BY line")
            return staged, imported, [r[0] for r in cursor.fetchall()]

    def _drop_duplicates_pg(self, kept: int) -> int:
        """imp_new (`kept` rows staged) less their duplicates, deleted in place; returns how many are kept.

        The keys of the deleted rows go to imp_dropped, for the rows of later chunks without a secret. The checks
        against the database are index probes (one to three per row): hash and merge joins are turned off for
        that statement, since the planner's statistics do not follow the token table growing during the import
        and a hash of the whole table per chunk would make the import quadratic.
        """
        cursor, token, client = self.cursor, self.token, self.client
        if self.dropped:
            # Without a secret, the key of a row dropped from an earlier chunk (those imported are in the
            # database): their keys are in imp_dropped already.
            with self._phase("duplicates: dropped earlier"):
                cursor.execute(
                    """
                DELETE FROM imp_new WHERE NOT has_secret AND EXISTS (
                    SELECT 1 FROM imp_dropped d
                    WHERE d.siret = imp_new.siret AND d.label = imp_new.label AND d.issued_at = imp_new.issued_at)
                """
                )
            kept -= cursor.rowcount
        # Three statements, each EXISTS at the top of its WHERE: a semi-join, i.e. one index probe per row. (OR-ed
        # EXISTS would be subplans, which the planner may run "hashed": a scan of the whole token table per chunk.)
        with self._only_join("nestloop"):
            for phase, condition in (
                ("duplicates: repeats in the chunk", "w.repeat"),
                # Generated secrets are new by construction: only given ones are looked up.
                (
                    "duplicates: known secrets",
                    f"w.has_secret AND NOT w.repeat AND EXISTS (SELECT 1 FROM {token} t WHERE t.secret_digest = w.digest)",
                ),
                (
                    "duplicates: known keys",
                    # The client's id as staged, else looked up (only then: COALESCE evaluates lazily).
                    f"""NOT w.has_secret AND NOT w.repeat AND EXISTS (
                    SELECT 1 FROM {token} t
                    WHERE t.client_id = COALESCE(w.client_id, (SELECT c.id FROM {client} c WHERE c.siret = w.siret))
                      AND t.label = w.label AND t.issued_at = w.issued_at)""",
                ),
            ):
                with self._phase(phase):
                    cursor.execute(
                        f"""
                        WITH gone AS (DELETE FROM imp_new w WHERE {condition} RETURNING w.siret, w.label, w.issued_at)
                        INSERT INTO imp_dropped (siret, label, issued_at) SELECT siret, label, issued_at FROM gone
                        """
                    )
                self.dropped += cursor.rowcount
                kept -= cursor.rowcount
        return kept

    def _stage(self, rows: list) -> None:
        cursor = self.cursor
        for table in ("imp_row", "imp_new", "imp_first"):
            cursor.execute(f"DELETE FROM {table}")
        sql = f"INSERT INTO imp_row ({', '.join(STAGE_COLUMNS)}) VALUES ({', '.join(['%s'] * 12)})"
        for start in range(0, len(rows), 2000):
            cursor.executemany(sql, rows[start : start + 2000])

    def _select_new(self) -> int:
        """imp_new := the staged rows that are not duplicates; returns their count.

        The checks against the database are index probes (one to three per row): on PostgreSQL, hash and merge
        joins are turned off for this statement, since the planner's statistics do not follow the token table
        growing during the import and a hash of the whole table per chunk would make the import quadratic.
        """
        token, client = self.token, self.client
        cursor = self.cursor
        token_id = f", nextval('{self.sequence}')" if self.pg else ""
        columns = ", ".join(STAGE_COLUMNS)
        with self._only_join("nestloop"):
            cursor.execute(
                f"""
                INSERT INTO imp_new ({columns}{", token_id" if self.pg else ""})
                SELECT {columns}{token_id}
                FROM (
                    SELECT r.*,
                           ROW_NUMBER() OVER (PARTITION BY digest ORDER BY line) AS rn_secret,
                           ROW_NUMBER() OVER (PARTITION BY siret, label, issued_at ORDER BY line) AS rn_key
                    FROM imp_row r
                ) w
                WHERE w.rn_secret = 1
                  AND (w.has_secret OR w.rn_key = 1)
                  -- Keys of rows dropped from earlier chunks: checked below, by a hash join.
                  -- Generated secrets are new by construction: only given ones are looked up.
                  AND NOT EXISTS (SELECT 1 FROM {token} t WHERE w.has_secret AND t.secret_digest = w.digest)
                  AND NOT EXISTS (
                      SELECT 1 FROM {client} c JOIN {token} t ON t.client_id = c.id
                      WHERE NOT w.has_secret AND c.siret = w.siret AND t.label = w.label AND t.issued_at = w.issued_at)
                """
            )
            imported = cursor.rowcount
        if self.dropped:
            cursor.execute(
                """
                DELETE FROM imp_new WHERE NOT has_secret AND EXISTS (
                    SELECT 1 FROM imp_dropped d
                    WHERE d.siret = imp_new.siret AND d.label = imp_new.label AND d.issued_at = imp_new.issued_at)
                """
            )
            imported -= cursor.rowcount
        return imported

    @contextlib.contextmanager
    def _only_join(self, method: str) -> Iterator[None]:
        """The statements inside join by `method` only (PostgreSQL; elsewhere, the planner chooses).

        "nestloop": index probes rather than hashes of whole tables, for the statements that check rows one by
        one (the planner's statistics do not follow the tables growing during the import: a hash of the whole
        token table per chunk would make the import quadratic). "hashjoin": joins of the chunk's rows with the
        small temporary tables, which have no statistics (the planner would sort both sides by text for a merge
        join, or probe in a loop). Not reset on an error: the transaction is rolled back.
        """
        off = [m for m in ("nestloop", "hashjoin", "mergejoin") if m != method] if self.pg else []
        for other in off:
            self.cursor.execute(f"SET LOCAL enable_{other} = off")
        yield
        for other in off:
            self.cursor.execute(f"SET LOCAL enable_{other} = on")

    def _expanded(self, kind: str) -> str:
        """FROM items giving `n` (kept rows) and `x.value` (each value of n's space-separated `kind`)."""
        if self.pg:
            cast = {"privs": "::integer", "contact_ids": "::bigint"}.get(kind, "")
            return (
                f"imp_new n CROSS JOIN LATERAL "
                f"(SELECT v{cast} AS value FROM unnest(string_to_array(n.{kind}, ' ')) v) x"
            )
        # Generic SQL: a recursive split, fine for the volumes of the embedded database.
        value = "CAST(value AS integer)" if kind == "privs" else "value"
        return (
            f"(WITH RECURSIVE s(line, value, rest) AS ("
            f" SELECT line, '', {kind} || ' ' FROM imp_new WHERE {kind} <> ''"
            f" UNION ALL SELECT line, substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)"
            f" FROM s WHERE rest <> '') SELECT line, {value} AS value FROM s WHERE value <> '') x "
            f"JOIN imp_new n ON n.line = x.line"
        )

    def _write_clients(self) -> None:
        """Clients are created with the first name the file gives them; a placeholder name (the SIRET) is
        replaced, as services.client_get_or_create does. On PostgreSQL, only the rows staged without a client id
        are looked at; their clients are then locked, their ids staged and kept in `known`."""
        cursor, client = self.cursor, self.client
        cursor.execute(
            f"""
            INSERT INTO imp_first (siret, name)
            SELECT siret, name FROM (
                SELECT siret, name,
                       ROW_NUMBER() OVER (PARTITION BY siret ORDER BY CASE WHEN name = '' THEN 1 ELSE 0 END, line) AS rn
                FROM imp_new {"WHERE client_id IS NULL" if self.pg else ""}
            ) f WHERE rn = 1
            """
        )
        if self.pg and not cursor.rowcount:
            return
        cursor.execute(
            f"""
            INSERT INTO {client} (name, siret, created_at)
            SELECT CASE WHEN f.name <> '' THEN f.name ELSE f.siret END, f.siret, %s
            FROM imp_first f
            WHERE NOT EXISTS (SELECT 1 FROM {client} c WHERE c.siret = f.siret)
            """,
            [self.now],
        )
        cursor.execute(
            f"""
            UPDATE {client} SET name = (SELECT f.name FROM imp_first f WHERE f.siret = {client}.siret)
            WHERE name = siret AND siret IN (SELECT f.siret FROM imp_first f WHERE f.name <> '')
            """
        )
        if not self.pg:
            return
        # Locked FOR KEY SHARE: no one can delete them before we commit (the foreign-key checks may be off).
        with self._only_join("hashjoin"):
            cursor.execute(
                f"""
                WITH locked AS (
                    SELECT c.id, c.siret, c.name FROM {client} c WHERE c.siret IN (SELECT siret FROM imp_first)
                    FOR KEY SHARE)
                UPDATE imp_first f SET client_id = l.id FROM locked l WHERE l.siret = f.siret
                RETURNING f.siret, l.id, l.name <> l.siret
                """
            )
            self.known.add_clients((siret, pk) for siret, pk, named in cursor.fetchall() if named)
            cursor.execute(
                "UPDATE imp_new n SET client_id = f.client_id FROM imp_first f "
                "WHERE n.client_id IS NULL AND f.siret = n.siret"
            )

    def _write_contacts(self) -> None:
        client, contact = self.client, self.contact
        if self.pg:
            self._write_contacts_pg()
            return
        self.cursor.execute(
            f"""
            INSERT INTO {contact} (client_id, email, name, phone, role)
            SELECT c.id, x.value, '', '', %s
            FROM {self._expanded("contacts")}
            JOIN {client} c ON c.siret = n.siret
            WHERE NOT EXISTS (
                SELECT 1 FROM {contact} k WHERE k.client_id = c.id AND k.email = x.value AND k.role = %s)
            GROUP BY c.id, x.value
            """,
            [self.role, self.role],
        )

    def _write_contacts_pg(self) -> None:
        """imp_contact := the chunk's distinct contacts with their ids, the missing ones created.

        Each (client, e-mail) is resolved once per chunk, by one probe of contact_unique_per_client_role, instead of
        once per token (and instead of a hash of the whole contact table per chunk); the token links then join on
        imp_contact. The existing contacts are locked FOR KEY SHARE as they are found (one deleted meanwhile is
        not found, and so created again): the links written later cannot point to a deleted contact.
        """
        cursor, contact = self.cursor, self.contact
        with self._phase("contacts: collect"):
            cursor.execute(
                f"""
            INSERT INTO imp_contact (client_id, email_key, email)
            SELECT n.client_id, x.value, x.value
            FROM {self._expanded("contacts")}
            WHERE n.contact_ids IS NULL
            GROUP BY n.client_id, x.value
            """
            )
        if not cursor.rowcount:
            return
        # One index probe per contact (a scalar subquery cannot be turned into a hash of the contact table).
        with self._phase("contacts: find"):
            cursor.execute(
                f"""
            UPDATE imp_contact i SET contact_id = (
                SELECT k.id FROM {contact} k
                WHERE k.client_id = i.client_id AND k.email = i.email_key AND k.role = %s
                FOR KEY SHARE)
            """,
                [self.role],
            )
        with self._only_join("hashjoin"), self._phase("contacts: create"):
            cursor.execute(
                f"""
                WITH created AS (
                    INSERT INTO {contact} (client_id, email, name, phone, role)
                    SELECT client_id, email, '', '', %s FROM imp_contact WHERE contact_id IS NULL
                    RETURNING id, client_id, email AS email_key)
                UPDATE imp_contact i SET contact_id = c.id FROM created c
                WHERE c.client_id = i.client_id AND c.email_key = i.email_key
                """,
                [self.role],
            )
        with self._phase("contacts: keep ids"):
            cursor.execute("SELECT client_id, email, contact_id FROM imp_contact")
            self.known.add_contacts(cursor.fetchall())

    def _write_tokens(self) -> None:
        cursor, client, contact = self.cursor, self.client, self.contact
        if self.pg:
            # Time-ordered public ids (UUID version 7 layout: 48-bit Unix milliseconds, then random bits): each
            # one lands at the right edge of the public_id index instead of on a random page, which keeps a
            # multi-million-row import from thrashing the buffer cache. Still unique and unguessable (74 random bits).
            id_column, id_value = "id, ", "n.token_id, "
            public_id = (
                # bytes 0-5: the time; 6: version 7 + 4 random bits; 8: variant bits as set by gen_random_uuid.
                "encode(set_byte(overlay(uuid_send(gen_random_uuid()) placing "
                "substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) from 1 for 6), "
                "6, 112 | (random() * 15)::integer), 'hex')::uuid"
            )
            join_token, token_id = "", "n.token_id"
            distinct, on_conflict = "", ""  # a row's e-mails are distinct (case-insensitively), its token new
            client_id, join_client = "n.client_id", ""  # resolved by _write_clients
        else:
            id_column = id_value = ""
            # A random UUID (version 4) as 32 hex digits, like Django stores it: only SQLite gets here.
            public_id = (
                "lower(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)"
                " || substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2) || hex(randomblob(6)))"
            )
            join_token, token_id = f"JOIN {self.token} t ON t.secret_digest = n.digest", "t.id"
            distinct, on_conflict = "DISTINCT ", ""
            client_id, join_client = "c.id", f"JOIN {client} c ON c.siret = n.siret"
        with self._phase("tokens"):
            cursor.execute(
                f"""
            INSERT INTO {self.token} ({id_column}public_id, client_id, label, issued_at, expires_at, origin,
                                      secret_prefix, secret_digest, revocation_reason, created_at, imported_by_run_id)
            SELECT {id_value}{public_id}, {client_id}, n.label, n.issued_at, n.expires_at, n.origin, n.prefix, n.digest,
                   '', %s, %s
            FROM imp_new n {join_client}
            ORDER BY {"n.digest" if self.pg else "n.line"}
            """,
                [self.now, self.run_id],
            )
        with self._phase("token privileges"):
            cursor.execute(
                f"""
            INSERT INTO {self.token_privileges} (token_id, privilege_id)
            SELECT {token_id}, x.value FROM {self._expanded("privs")} {join_token}
            """
            )
        if self.pg:
            with self._phase("token contacts"):
                # The contact ids staged by the reading thread, then those resolved by _write_contacts_pg (a
                # hash join).
                cursor.execute(
                    f"""
                    INSERT INTO {self.token_contacts} (token_id, contact_id)
                    SELECT n.token_id, x.value FROM {self._expanded("contact_ids")}
                    """
                )
                with self._only_join("hashjoin"):
                    cursor.execute(
                        f"""
                        INSERT INTO {self.token_contacts} (token_id, contact_id)
                        SELECT n.token_id, i.contact_id
                        FROM {self._expanded("contacts")}
                        JOIN imp_contact i ON i.client_id = n.client_id AND i.email_key = x.value
                        WHERE n.contact_ids IS NULL
                        """
                    )
            return
        # Each contact id by an index probe (contact_unique_per_client_role), whatever the statistics say.
        with self._phase("token contacts"):
            cursor.execute(
                f"""
            INSERT INTO {self.token_contacts} (token_id, contact_id)
            SELECT {distinct}{token_id}, (
                SELECT k.id FROM {contact} k
                WHERE k.client_id = c.id AND k.email = x.value AND k.role = %s)
            FROM {self._expanded("contacts")} {join_token}
            JOIN {client} c ON c.siret = n.siret
            {on_conflict}
            """,
                [self.role],
            )


# --------------------------------------------------------------------------------------------------
# The import
# --------------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    errors: int = 0
    generated: int = 0
    # Seconds per phase of the writes (ChunkWriter), plus the time the reading thread waited for them.
    phases: dict[str, float] = field(default_factory=dict)


def _pg_session_tuning(cursor) -> None:
    """Memory for this transaction's sorts and staging tables (temp_buffers only takes before any temp table);
    no JIT (its compile time costs more than it saves on these short statements)."""
    cursor.execute("SET LOCAL work_mem = '128MB'")
    cursor.execute("SET LOCAL jit = off")
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL temp_buffers = '256MB'")
    except DatabaseError:
        pass  # this session already used temporary tables: keep its setting


def _os_user() -> str:
    try:
        return getpass.getuser()[:150]
    except (OSError, KeyError):
        return ""


class SecretsFileError(OSError):
    """The --secrets-out file cannot be created (it exists, is a symbolic link, or its folder is not writable)."""


def secrets_file_create(path: str):
    """Open a new file for generated secrets: created here or not at all (never an existing file, never through a
    symbolic link, O_CREAT|O_EXCL|O_NOFOLLOW), readable by its owner only (0600) from its creation."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise SecretsFileError(
            f"--secrets-out {path} : ce chemin existe déjà (fichier ou lien symbolique)"
        ) from None
    except OSError as exc:
        raise SecretsFileError(f"--secrets-out {path} : {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    return open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115 -- the caller closes it


def _secrets_file_discard(out, path: str) -> None:
    """Close and remove the secrets file this run created (only if `path` still names that very file)."""
    with contextlib.suppress(OSError):
        created = os.fstat(out.fileno())
        out.close()
        current = os.lstat(path)
        if (current.st_dev, current.st_ino) == (created.st_dev, created.st_ino):
            os.unlink(path)
    with contextlib.suppress(OSError):
        out.close()


class _Abort(Exception):
    pass


class _Inline:
    """The executor of the embedded database: runs each chunk at once, in this thread."""

    class _Done:
        def __init__(self, value) -> None:
            self._value = value

        def result(self):
            return self._value

    def submit(self, fn, *args):
        return self._Done(fn(*args))

    def shutdown(self, wait: bool = True) -> None:
        pass


def tokens_import(
    *,
    source: io.BufferedIOBase,
    dry_run: bool = False,
    secrets_out: str | None = None,
    on_error: Callable[[int, str], None],
    on_progress: Callable[[str], None] | None = None,
    progress_every: int = 50_000,
    chunk_rows: int | None = None,
    source_name: str = "",
) -> ImportResult:
    """Import the CSV `source` (binary) all-or-nothing; every bad row goes to `on_error(line, message)`.

    One transaction: rows are validated in Python and written chunk by chunk (see ChunkWriter); any bad row stops
    the writing (the other rows are still validated, to report every bad one) and rolls everything back. A dry run
    writes everything too, to count exactly, then rolls back. Memory: at most two chunks of rows.
    """
    result = ImportResult()
    chunk_rows = chunk_rows or CHUNK_ROWS
    now = timezone.now()
    run_key = secrets_module.token_bytes(32)
    pg = connection.vendor == "postgresql"
    # Created before anything is written (a refused path imports nothing); removed again unless the import commits.
    out = secrets_file_create(secrets_out) if secrets_out and not dry_run else None
    kept = False
    executor = pending = None
    waited = [0.0]

    def collect() -> None:
        """Wait for the chunk being written; count it and write its generated secrets."""
        nonlocal pending
        if pending is None:
            return
        future, pending = pending, None
        started = time.perf_counter()
        staged, imported, lines = future.result()
        waited[0] += time.perf_counter() - started
        result.imported += imported
        result.duplicates += staged - imported
        result.generated += len(lines)
        if out is not None:
            out.writelines(f"{line},{validator.generated_secret(line)}\n" for line in lines)

    switch_interval = sys.getswitchinterval()
    if pg:
        # The worker thread waits for the GIL after each statement, while the reading thread validates: up to
        # the switch interval (5 ms by default) during which the database has nothing to do.
        sys.setswitchinterval(WORKER_SWITCH_INTERVAL)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if pg:
                _pg_session_tuning(cursor)
                # Two imports at once would race on the duplicate checks: one at a time.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x70CE1])
            # The audit record of this run: each token it creates points to it (no per-token event rows).
            run = TokenImport.objects.create(file_name=source_name[:255], run_by=_os_user(), started_at=now)
            rows = read_rows(source)
            try:
                first = next(rows, None)
                if first is None:
                    on_error(1, "fichier vide : l'en-tête est requis.")
                    result.errors += 1
                    raise _Abort
                if first[0] != 1:
                    on_error(1, "la ligne 1 doit être l'en-tête.")
                    result.errors += 1
                    raise _Abort
                known = KnownIds() if pg else None
                try:
                    validator = RowValidator(first[1], now=now, run_key=run_key, copy_format=pg, known=known)
                except InvalidValue as exc:
                    on_error(1, str(exc))
                    result.errors += 1
                    raise _Abort from None
                if pg:
                    # The worker gets its own cursor on the same (thread-safe) psycopg connection; this thread
                    # does not touch the database while a chunk is being written.
                    writer = ChunkWriter(connection.connection.cursor(), now=now, run_id=run.pk, known=known)
                    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import_tokens")
                else:
                    writer = ChunkWriter(cursor, now=now, run_id=run.pk)
                    executor = _Inline()
                validate = validator.validate
                chunk: list = []
                for line, fields in rows:
                    result.rows += 1
                    try:
                        staged = validate(line, fields)
                    except InvalidValue as exc:
                        result.errors += 1
                        on_error(line, str(exc))
                        chunk = []
                        continue
                    if result.errors:
                        continue
                    chunk.append(staged)
                    if len(chunk) >= chunk_rows:
                        collect()
                        pending = executor.submit(writer.write, writer.stage(chunk))
                        validator.new_chunk()
                        chunk = []
                    if on_progress and result.rows % progress_every == 0:
                        on_progress(f"{result.rows} lignes lues, {result.imported} importées")
                if not result.errors:
                    collect()
                    if chunk:
                        pending = executor.submit(writer.write, writer.stage(chunk))
                    collect()
                    writer.finish()
                    result.phases = {**writer.phases, "reader waiting for the writer": waited[0]}
                    logger.debug(
                        "import_tokens phases (s): %s",
                        ", ".join(f"{k} {v:.1f}" for k, v in result.phases.items()),
                    )
            except BadEncoding as exc:
                on_error(exc.line, "encodage invalide : UTF-8 attendu.")
                result.errors += 1
                raise _Abort from None
            except InvalidCsv as exc:
                on_error(exc.line, exc.message)
                result.errors += 1
                raise _Abort from None
            finally:
                if pending is not None:
                    with contextlib.suppress(Exception):
                        pending.result()  # the connection must be free before rolling back
                if executor is not None:
                    executor.shutdown(wait=True)
            if result.errors:
                raise _Abort
            if result.imported:
                run.finished_at = timezone.now()
                run.rows, run.imported, run.duplicates = result.rows, result.imported, result.duplicates
                run.save(update_fields=["finished_at", "rows", "imported", "duplicates"])
            else:
                run.delete()  # nothing imported (e.g. a re-import): a no-op leaves no trace
            if dry_run:
                transaction.set_rollback(True)
            elif out is not None:
                out.flush()
                os.fsync(out.fileno())  # on disk before the tokens they unlock are committed
        kept = out is not None and not result.errors
    except _Abort:
        pass
    finally:
        sys.setswitchinterval(switch_interval)
        if out is not None:
            if kept:
                out.close()
            else:
                _secrets_file_discard(out, secrets_out)
    return result
