# ruff: noqa: S608 -- SQL is built from model metadata and constants; values always go as parameters.
"""Validation shared by `issue_token` and `import_tokens`, and the bulk import itself (docs/commands.md).

The import is one transaction, all or nothing:

1. each CSV row is parsed and validated in Python as it is read (bounded caches: constant memory); every bad row is
   reported with its line number, and nothing is written once one is met;
2. on PostgreSQL the valid rows go by chunks through a `COPY` into a temporary staging table, then a handful of
   set-based statements (hash or merge joins on keys, or index probes: linear whatever the data's shape) drop the
   duplicates and insert clients, contacts, tokens and their links, while the next chunk is validated
   (PostgresWriter); elsewhere (SQLite under `make run`, tests) the ORM writes the rows by chunks (OrmWriter).

A row without a secret gets credentials.derived_secret(run key, line number), the run key being random and kept in
memory only: the database gets its digest, and the secret is rebuilt from the line number for the rows actually
imported when `--secrets-out` is written. No plain secret ever reaches the database.
"""

import contextlib
import csv
import datetime as dt
import getpass
import io
import itertools
import logging
import operator
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import psycopg
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.identity import InvalidEmail, ascii_lower, normalize_email
from tokenmgr.errors import ApplicationError

from . import credentials, validity
from .models import Client, Contact, Origin, Privilege, Token, TokenImport
from .siret import siret_error

COLUMNS = ("siret", "name", "label", "privileges", "issued_at", "origin", "contacts", "secret")
IMPORT_CONTACT_ROLE = Contact.Role.REQUESTER  # imported contacts: the people who asked for the token
MAX_SECRET_LENGTH = credentials.SECRET_MAX_LENGTH  # what /v2/privileges accepts
MIN_ISSUED_AT = dt.date(1970, 1, 1)
NAME_MAX = Client._meta.get_field("name").max_length
LABEL_MAX = Token._meta.get_field("label").max_length
EMAIL_MAX = Contact._meta.get_field("email").max_length
CACHE_SIZE = 65_536  # entries per cache of repeated values (SIRETs, dates, privilege and contact lists)

logger = logging.getLogger(__name__)


class InvalidValue(ApplicationError):
    """One clear, single-line reason why a value is refused (French, shown to the operator)."""

    def __init__(self, message: str, *, code: str = "invalid_value", field: str | None = None) -> None:
        super().__init__(message, code=code, field=field)


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
# Row validation
# --------------------------------------------------------------------------------------------------

ORIGINS = frozenset(Origin.values)


@dataclass(slots=True)
class ImportRow:
    """A valid row, as staged. `privileges` holds privilege ids; `contacts` normalized addresses."""

    line: int
    siret: str
    name: str
    label: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    origin: str
    privileges: tuple[int, ...]
    contacts: tuple[str, ...]
    has_secret: bool
    digest: str
    prefix: str

    def key(self) -> tuple[str, str, dt.datetime]:
        """What makes a row without a secret a duplicate: the same (SIRET, label, issued_at)."""
        return (self.siret, self.label, self.issued_at)


class RowValidator:
    """Validates CSV rows into ImportRow; its caches are bounded, so memory stays constant."""

    def __init__(self, header: list[str], *, now: dt.datetime, run_key: bytes) -> None:
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
        self.run_key = run_key
        self.catalogue = dict(Privilege.objects.values_list("code", "id"))
        # SIRETs, dates, privilege and contact lists repeat a lot across rows.
        cache = lru_cache(maxsize=CACHE_SIZE)
        self._siret = cache(check_siret)
        self._privileges = cache(lambda raw: check_privileges(split_list(raw), self.catalogue))
        self._issued = cache(self._issued_uncached)
        self._emails = cache(lambda raw: tuple(check_emails(split_list(raw))))

    def _issued_uncached(self, raw: str) -> tuple[dt.datetime, dt.datetime, str]:
        issued = parse_issued_at(raw, now=self.now)
        return issued, validity.expiry_for(issued), validity.default_origin(issued)

    def secret(self, line: int) -> str:
        """The secret generated for the row of `line` (when it has none)."""
        return credentials.derived_secret(self.run_key, line)

    def validate(self, line: int, fields: list[str]) -> ImportRow:
        if len(fields) != self.width:
            raise InvalidValue(f"{len(fields)} champ(s) au lieu de {self.width}.")
        siret, name, label, privileges, issued_at, origin, contacts, secret = self._pick(fields)
        siret = self._siret(siret)
        name = check_text(name, what="nom", max_length=NAME_MAX)
        label = check_text(label, what="libellé", max_length=LABEL_MAX)
        privilege_ids = self._privileges(privileges)
        issued, expires, default_origin = self._issued(issued_at)
        origin = origin.strip()
        if not origin:
            origin = default_origin
        elif origin not in ORIGINS:
            check_origin(origin, issued)  # raises the message
        emails = self._emails(contacts)
        secret = secret.strip()
        has_secret = bool(secret)
        secret = check_secret(secret) if has_secret else self.secret(line)
        return ImportRow(
            line,
            siret,
            name,
            label,
            issued,
            expires,
            origin,
            privilege_ids,
            emails,
            has_secret,
            credentials.digest(secret),
            credentials.display_prefix(secret),
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
# Writers: one per kind of database
# --------------------------------------------------------------------------------------------------


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


class _Phases:
    """Seconds spent per phase of the writes (logged at DEBUG level at the end; bench/import.py shows them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


_STAGED = operator.attrgetter(*ImportRow.__slots__)


def first_occurrences(rows: Iterable[ImportRow]) -> Iterator[tuple[ImportRow, bool]]:
    """Each row, and whether no earlier row of `rows` has its secret (when it has one), else its key: the later
    ones are duplicates within the file."""
    digests: set[str] = set()
    keys: set[tuple] = set()
    for row in rows:
        key = row.key()
        if row.has_secret:
            first = row.digest not in digests
            digests.add(row.digest)
        else:
            first = key not in keys
        keys.add(key)
        yield row, first


class PostgresWriter:
    """The rows by chunks of `chunk_rows`, each through one COPY into a staging table and a few set-based statements.

    A chunk's statements go in pipeline mode (psycopg's, on the import's one connection and thread): the database
    runs them while Python reads and validates the next chunk, so the two work at the same time instead of in turn
    (1,000,000 spread rows: 130 s in turn, 96 s so, the database's share being the larger one: README).
    Each statement joins on whole keys (staging tables against the unique indexes of clients, contacts and tokens),
    so that the planner picks hash or merge joins, or index probes: none of them grows with the number of tokens or
    contacts per client. A row probes only the index that can hold its duplicate (its secret's digest, or its key).
    Rows of earlier chunks are in the tables already; the keys of the rows dropped as duplicates are kept in
    `imp_dropped` (a later row without a secret repeating one of them is a duplicate too). Token ids are drawn from
    the token table's sequence while staging, so that the links are inserted without joining back on the token
    table.
    """

    chunk_rows = 50_000

    def __init__(
        self, *, now: dt.datetime, run_id: int, on_generated: Callable[[Iterable[int]], None]
    ) -> None:
        self.cursor = connection.cursor()
        self.now, self.run_id, self.on_generated = now, run_id, on_generated
        self.phase = _Phases()
        self.role = IMPORT_CONTACT_ROLE.value
        self.pending: list[ImportRow] = []
        self.imported = 0
        self.chunks = 0
        self.in_flight: _Chunk | None = None
        self.cursor.execute("SET LOCAL work_mem = '256MB'")  # the sorts and hashes below, in memory
        # No JIT compilation: each chunk's statements are planned afresh and run once, and their cost estimates
        # (tens of thousands of rows) pass PostgreSQL's JIT threshold, so each would be compiled for a single run
        # (1,000,000 rows, with and without it in turn: about 12 s of the database's 95 s of CPU; README).
        self.cursor.execute("SET LOCAL jit = off")
        # A chunk's staging tables (about 40 MB) stay in memory: within the default temp_buffers (8 MB) PostgreSQL
        # writes them out and reads them back, and a chunk's COPY alone takes three times as long. The setting can
        # only change before the session's first temporary table: a session that had one (tests) keeps its own.
        with contextlib.suppress(DatabaseError), transaction.atomic():
            self.cursor.execute("SET LOCAL temp_buffers = '128MB'")
        # Foreign keys checked at the end of each statement rather than all at the commit: a commit-time check would
        # queue an event per imported link in memory.
        self.cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # The joins and the foreign-key checks below are planned from the tables' statistics. An (auto)ANALYZE by
        # another session cannot see this transaction's rows: run in the middle of the import, it would record
        # thousands of pages holding no row, and the planner would then check each new link's token by scanning
        # a whole index (minutes to hours instead of seconds). This lock mode keeps (auto)VACUUM and ANALYZE off these
        # tables until the commit, and nothing else: reads and writes of the application go on.
        written = [
            _table(m) for m in (Client, Contact, Token, Token.privileges.through, Token.contacts.through)
        ]
        self.cursor.execute(f"LOCK TABLE {', '.join(written)} IN SHARE UPDATE EXCLUSIVE MODE")
        # This transaction's own ANALYZE does count its rows; it needs the tables' owner (the role that ran the
        # migrations, as the application's own role does). Another role gets a warning and the old statistics.
        self.cursor.execute(
            "SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) FROM pg_class c WHERE c.oid = ANY(%s::regclass[])",
            [[m._meta.db_table for m in (Client, Contact, Token)]],
        )
        self.can_analyze = bool(self.cursor.fetchone()[0])
        if not self.can_analyze:
            logger.warning("import_tokens: not the owner of the tables, their statistics are not refreshed")
        self.cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [Token._meta.db_table])
        self.token_ids = self.cursor.fetchone()[0]  # the sequence of the token table's ids
        # ON COMMIT DROP, and dropped first in case an enclosing transaction (tests) has not committed yet.
        self.cursor.execute("DROP TABLE IF EXISTS imp_row, imp_new, imp_client, imp_link, imp_dropped")
        self.cursor.execute(
            "CREATE TEMPORARY TABLE imp_row (line integer, siret text, name text, label text, "
            "issued_at timestamptz, expires_at timestamptz, origin text, privileges text, contacts text, "
            "has_secret boolean, digest text, prefix text, first boolean) ON COMMIT DROP"
        )
        self.cursor.execute(
            "CREATE TEMPORARY TABLE imp_dropped (siret text, label text, issued_at timestamptz) ON COMMIT DROP"
        )
        # Probed once per row of each later chunk: indexed, so that no plan scans it once per row (quadratic).
        self.cursor.execute("CREATE INDEX ON imp_dropped (siret, label, issued_at)")

    @contextlib.contextmanager
    def staging(self) -> Iterator[Callable[[ImportRow], None]]:
        """A function that stages one row; a full chunk goes to the database at once (bounded memory)."""

        def put(row: ImportRow) -> None:
            self.pending.append(row)
            if len(self.pending) >= self.chunk_rows:
                self._flush()

        with self._closing_on_error():
            yield put

    def write(self) -> int:
        """Writes what is left, waits for the database; returns how many tokens the import created."""
        with self._closing_on_error():
            self._flush()
            self._finish()
        return self.imported

    @contextlib.contextmanager
    def _closing_on_error(self) -> Iterator[None]:
        """On any error, lets the database finish the chunk in flight and leaves pipeline mode, so that the
        rollback that follows runs on a plain connection (the chunk's own error, if any, is moot by then)."""
        try:
            yield
        except BaseException:
            chunk, self.in_flight = self.in_flight, None
            if chunk is not None:
                with contextlib.suppress(Exception):
                    chunk.pipeline.close()
            raise

    def _flush(self) -> None:
        rows, self.pending = self.pending, []
        if not rows:
            return
        previous, self.in_flight = self.in_flight, None
        if previous is not None:
            self._settle(previous)
        with self.phase("stage (COPY)"):
            self.cursor.execute("TRUNCATE imp_row")
            columns = ", ".join((*ImportRow.__slots__, "first"))
            with self.cursor.copy(f"COPY imp_row ({columns}) FROM STDIN") as copy:
                write_row = copy.write_row
                for row, first in first_occurrences(rows):
                    values = list(_STAGED(row))
                    # Lists as space-separated text (neither a privilege id nor a valid address holds a space).
                    values[7], values[8] = " ".join(map(str, row.privileges)), " ".join(row.contacts)
                    values.append(first)
                    write_row(values)
        del rows
        self._send(first=self.chunks == 0)
        self.chunks += 1
        if previous is not None:  # while the database works on this chunk
            self._report(previous)

    def _finish(self) -> None:
        previous, self.in_flight = self.in_flight, None
        if previous is not None:
            self._settle(previous)
            self._report(previous)

    def _report(self, chunk: "_Chunk") -> None:
        with self.phase("generated secrets"):
            self.on_generated(chunk.generated)

    def _settle(self, chunk: "_Chunk") -> None:
        """Waits for the database to finish `chunk`, and reads its results."""
        with self.phase("wait for the database"):
            try:
                chunk.pipeline.close()
            except psycopg.Error as exc:  # raised by the sync, outside Django's cursor: given Django's type
                raise DatabaseError(one_line(str(exc))) from exc
        self.imported += chunk.tokens.rowcount
        chunk.generated = [line for (line,) in chunk.lines.fetchall()]

    def _analyze(self, table: str) -> None:
        if self.can_analyze:
            self.cursor.execute(f"ANALYZE {table}")

    def _send(self, *, first: bool) -> None:
        """Sends the statements that write the staged chunk, without waiting for them: the chunk in flight."""
        raw = self.cursor.connection
        chunk = self.in_flight = _Chunk(
            pipeline=contextlib.ExitStack(), tokens=raw.cursor(), lines=raw.cursor()
        )
        chunk.pipeline.enter_context(raw.pipeline())
        cursor = self.cursor  # the statements whose results are not read
        token, client, contact = _table(Token), _table(Client), _table(Contact)
        cursor.execute("DROP TABLE IF EXISTS imp_new, imp_client, imp_link")
        # The chunk's clients, with the ids of those already registered.
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE imp_client ON COMMIT DROP AS
            SELECT r.siret, c.id AS client_id FROM (SELECT DISTINCT siret FROM imp_row) r
            LEFT JOIN {client} c ON c.siret = r.siret
            """
        )
        cursor.execute("ANALYZE imp_client")
        # First occurrences within the chunk (flagged while staging), not already in the database nor dropped from
        # an earlier chunk. The database's tokens are probed through LATERAL ... LIMIT 1: one index probe per row,
        # whatever the table's size (an EXISTS may be planned as a hash of the whole table, built again for each
        # chunk: quadratic). A row probes only the index that can hold its duplicate: its secret's, or its key's.
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE imp_new ON COMMIT DROP AS
            SELECT nextval(%s::regclass) AS token_id, r.line, r.siret, r.name, r.label,
                   r.issued_at, r.expires_at, r.origin, r.privileges, r.contacts, r.has_secret, r.digest, r.prefix
            FROM imp_row r JOIN imp_client i ON i.siret = r.siret
            LEFT JOIN LATERAL (
                SELECT 1 AS found FROM {token} t WHERE r.has_secret AND t.secret_digest = r.digest LIMIT 1
            ) same_secret ON true
            LEFT JOIN LATERAL (
                SELECT 1 AS found FROM {token} t
                WHERE NOT r.has_secret AND t.client_id = i.client_id AND t.label = r.label AND t.issued_at = r.issued_at
                LIMIT 1
            ) same_key ON true
            WHERE r.first AND same_secret.found IS NULL AND same_key.found IS NULL
              AND NOT EXISTS (
                  SELECT 1 FROM imp_dropped d
                  WHERE NOT r.has_secret AND d.siret = r.siret AND d.label = r.label AND d.issued_at = r.issued_at)
            """,
            [self.token_ids],
        )
        cursor.execute(
            "INSERT INTO imp_dropped SELECT r.siret, r.label, r.issued_at FROM imp_row r "
            "WHERE NOT EXISTS (SELECT 1 FROM imp_new n WHERE n.line = r.line)"
        )
        # Each new client with the first name the file gives it; a placeholder name (the SIRET) is replaced, as
        # services.client_get_or_create does.
        cursor.execute(
            f"""
            INSERT INTO {client} (name, siret, created_at)
            SELECT DISTINCT ON (n.siret) CASE WHEN n.name <> '' THEN n.name ELSE n.siret END, n.siret, %s
            FROM imp_new n JOIN imp_client i ON i.siret = n.siret
            WHERE i.client_id IS NULL
            ORDER BY n.siret, n.name = '', n.line
            ON CONFLICT (siret) DO NOTHING
            """,
            [self.now],
        )
        cursor.execute(
            f"""
            UPDATE {client} c SET name = n.name
            FROM (SELECT DISTINCT ON (siret) siret, name FROM imp_new WHERE name <> '' ORDER BY siret, line) n
            WHERE c.siret = n.siret AND c.name = c.siret
            """
        )
        if first:
            self._analyze(client)
        cursor.execute(
            f"UPDATE imp_client i SET client_id = c.id FROM {client} c WHERE c.siret = i.siret AND i.client_id IS NULL"
        )
        # One row per (token, contact), with the contact's whole key: the joins below compare keys only, never a
        # column with a constant, so that the planner's estimates of the tables just written (which have no
        # statistics yet) come from their size alone.
        cursor.execute(
            """
            CREATE TEMPORARY TABLE imp_link ON COMMIT DROP AS
            SELECT n.token_id, i.client_id, e.email, %s::text AS role
            FROM imp_new n JOIN imp_client i ON i.siret = n.siret
            CROSS JOIN unnest(string_to_array(n.contacts, ' ')) AS e(email)
            """,
            [self.role],
        )
        cursor.execute("ANALYZE imp_link (client_id, email)")
        cursor.execute(
            f"""
            INSERT INTO {contact} (client_id, email, name, phone, role)
            SELECT DISTINCT client_id, email, '', '', role FROM imp_link
            ON CONFLICT (client_id, email, role) DO NOTHING
            """
        )
        if first:
            # The links join the contact table on its unique key: statistics of a table just filled keep that a
            # hash or index join (without them the planner may scan it once per link: quadratic). Later chunks
            # are planned from these and the tables' current size.
            self._analyze(contact)
        chunk.tokens.execute(
            f"""
            INSERT INTO {token} (id, public_id, client_id, label, issued_at, expires_at, origin, secret_prefix,
                                 secret_digest, revocation_reason, created_at, imported_by_run_id)
            SELECT n.token_id, gen_random_uuid(), i.client_id, n.label, n.issued_at, n.expires_at, n.origin,
                   n.prefix, n.digest, '', %s, %s
            FROM imp_new n JOIN imp_client i ON i.siret = n.siret
            """,
            [self.now, self.run_id],
        )
        if first:
            self._analyze(token)  # the links' foreign keys are checked against it
        cursor.execute(
            f"""
            INSERT INTO {_table(Token.privileges.through)} (token_id, privilege_id)
            SELECT n.token_id, p.id
            FROM imp_new n CROSS JOIN unnest(string_to_array(n.privileges, ' ')::integer[]) AS p(id)
            """
        )
        cursor.execute(
            f"""
            INSERT INTO {_table(Token.contacts.through)} (token_id, contact_id)
            SELECT l.token_id, k.id FROM imp_link l
            CROSS JOIN LATERAL (
                SELECT k.id FROM {contact} k
                WHERE k.client_id = l.client_id AND k.email = l.email AND k.role = l.role
                LIMIT 1
            ) k
            """
        )
        chunk.lines.execute("SELECT line FROM imp_new WHERE NOT has_secret ORDER BY line")


@dataclass(slots=True)
class _Chunk:
    """A chunk sent to the database: its pipeline (closed once the database is done) and the cursors whose
    results the import reads."""

    pipeline: contextlib.ExitStack
    tokens: psycopg.Cursor  # the token insert: its row count
    lines: psycopg.Cursor  # the lines of the imported rows without a secret
    generated: list[int] = field(default_factory=list)


class OrmWriter:
    """The rows by chunks of `chunk_rows` through the ORM: for the embedded database (SQLite under `make run`).

    Rows of earlier chunks are in the database already; the keys of the rows dropped as duplicates are kept (a
    later row without a secret repeating one of them is a duplicate too)."""

    chunk_rows = 2_000

    def __init__(
        self, *, now: dt.datetime, run_id: int, on_generated: Callable[[Iterable[int]], None]
    ) -> None:
        self.now, self.run_id, self.on_generated = now, run_id, on_generated
        self.phase = _Phases()
        self.dropped_keys: set[tuple] = set()
        self.imported = 0

    @contextlib.contextmanager
    def staging(self) -> Iterator[Callable[[ImportRow], None]]:
        chunk: list[ImportRow] = []

        def put(row: ImportRow) -> None:
            chunk.append(row)
            if len(chunk) >= self.chunk_rows:
                self._write(chunk)
                chunk.clear()

        yield put
        if chunk:
            self._write(chunk)

    def write(self) -> int:
        return self.imported

    def _write(self, rows: list[ImportRow]) -> None:
        given = {r.digest for r in rows if r.has_secret}
        known_digests = set(
            Token.objects.filter(secret_digest__in=given).values_list("secret_digest", flat=True)
        )
        keyed = [r for r in rows if not r.has_secret]
        known_keys = set(
            Token.objects.filter(
                client__siret__in={r.siret for r in keyed}, label__in={r.label for r in keyed}
            ).values_list("client__siret", "label", "issued_at")
        )
        kept: list[ImportRow] = []
        for row, first in first_occurrences(rows):
            key = row.key()
            if not first:
                duplicate = True
            elif row.has_secret:
                duplicate = row.digest in known_digests
            else:
                duplicate = key in known_keys or key in self.dropped_keys
            if duplicate:
                self.dropped_keys.add(key)
            else:
                kept.append(row)
        if not kept:
            return
        names: dict[str, str] = {}
        for row in kept:
            if not names.get(row.siret):
                names[row.siret] = row.name
        clients = {c.siret: c for c in Client.objects.filter(siret__in=names)}
        for siret, name in names.items():
            found = clients.get(siret)
            if found is None:
                clients[siret] = Client.objects.create(siret=siret, name=name or siret, created_at=self.now)
            elif name and found.name == found.siret:
                found.name = name
                found.save(update_fields=["name"])
        pairs = {(clients[r.siret].pk, email) for r in kept for email in r.contacts}
        role = IMPORT_CONTACT_ROLE.value

        def contact_ids() -> dict[tuple[int, str], int]:
            found = Contact.objects.filter(
                client__in={c for c, _ in pairs}, email__in={e for _, e in pairs}, role=role
            ).values_list("client_id", "email", "pk")
            return {(c, e): pk for c, e, pk in found}

        ids = contact_ids()
        missing = pairs - ids.keys()
        if missing:
            Contact.objects.bulk_create(Contact(client_id=c, email=e, role=role) for c, e in missing)
            ids = contact_ids()
        tokens = Token.objects.bulk_create(
            Token(
                client=clients[r.siret],
                label=r.label,
                issued_at=r.issued_at,
                expires_at=r.expires_at,
                origin=r.origin,
                secret_prefix=r.prefix,
                secret_digest=r.digest,
                created_at=self.now,
                imported_by_run_id=self.run_id,
            )
            for r in kept
        )
        if any(t.pk is None for t in tokens):  # a database that does not return the ids of bulk inserts
            by_digest = dict(
                Token.objects.filter(secret_digest__in=[r.digest for r in kept]).values_list(
                    "secret_digest", "pk"
                )
            )
            for t in tokens:
                t.pk = by_digest[t.secret_digest]
        Token.privileges.through.objects.bulk_create(
            Token.privileges.through(token_id=t.pk, privilege_id=p)
            for r, t in zip(kept, tokens, strict=True)
            for p in r.privileges
        )
        Token.contacts.through.objects.bulk_create(
            Token.contacts.through(token_id=t.pk, contact_id=ids[(t.client_id, e)])
            for r, t in zip(kept, tokens, strict=True)
            for e in r.contacts
        )
        self.imported += len(kept)
        self.on_generated(r.line for r in kept if not r.has_secret)


def writer_class():
    """The writer of the current database: one COPY and set-based SQL on PostgreSQL, the ORM elsewhere."""
    return PostgresWriter if connection.vendor == "postgresql" else OrmWriter


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
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase of the writes


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


def tokens_import(
    *,
    source: io.BufferedIOBase,
    dry_run: bool = False,
    secrets_out: str | None = None,
    on_error: Callable[[int, str], None],
    on_progress: Callable[[str], None] | None = None,
    progress_every: int = 50_000,
    source_name: str = "",
) -> ImportResult:
    """Import the CSV `source` (binary) all-or-nothing; every bad row goes to `on_error(line, message)`.

    One transaction: rows are validated as they are read and staged (PostgresWriter, OrmWriter); once a row is
    bad nothing more is staged (the other rows are still validated, to report every bad one) and everything is
    rolled back. A dry run writes everything too, to count exactly, then rolls back.
    """
    result = ImportResult()
    now = timezone.now()
    run_key = credentials.new_series_key()
    # Created before anything is written (a refused path imports nothing); removed again unless the import commits.
    out = secrets_file_create(secrets_out) if secrets_out and not dry_run else None
    kept = False

    def on_generated(lines: Iterable[int]) -> None:
        for line in lines:
            result.generated += 1
            if out is not None:
                out.write(f"{line},{validator.secret(line)}\n")

    def fail(line: int, message: str) -> None:
        result.errors += 1
        on_error(line, message)

    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:  # two imports at once would race on the duplicate checks
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x70CE1])
            # The audit record of this run: each token it creates points to it.
            run = TokenImport.objects.create(file_name=source_name[:255], run_by=_os_user(), started_at=now)
            rows = read_rows(source)
            try:
                first = next(rows, None)
                if first is None:
                    fail(1, "fichier vide : l'en-tête est requis.")
                    raise _Abort
                if first[0] != 1:
                    fail(1, "la ligne 1 doit être l'en-tête.")
                    raise _Abort
                try:
                    validator = RowValidator(first[1], now=now, run_key=run_key)
                except InvalidValue as exc:
                    fail(1, str(exc))
                    raise _Abort from None
                writer = writer_class()(now=now, run_id=run.pk, on_generated=on_generated)
                with writer.staging() as put:
                    for line, fields in rows:
                        result.rows += 1
                        try:
                            row = validator.validate(line, fields)
                        except InvalidValue as exc:
                            fail(line, str(exc))
                            continue
                        if not result.errors:
                            put(row)
                        if on_progress and result.rows % progress_every == 0:
                            on_progress(f"{result.rows} lignes lues et validées")
                    if result.errors:
                        raise _Abort
            except BadEncoding as exc:
                fail(exc.line, "encodage invalide : UTF-8 attendu.")
                raise _Abort from None
            except InvalidCsv as exc:
                fail(exc.line, exc.message)
                raise _Abort from None
            result.imported = writer.write()
            result.duplicates = result.rows - result.imported
            result.phases = writer.phase.seconds
            logger.debug(
                "import_tokens phases (s): %s", ", ".join(f"{k} {v:.1f}" for k, v in result.phases.items())
            )
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
        kept = out is not None
    except _Abort:
        pass
    finally:
        if out is not None:
            if kept:
                out.close()
            else:
                _secrets_file_discard(out, secrets_out)
    return result
