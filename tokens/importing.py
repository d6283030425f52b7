# ruff: noqa: S608 -- SQL is built from model metadata and constants; values always go as parameters.
"""Validation shared by `issue_token` and `import_tokens`, and the bulk import itself (CONTRACT §3).

The import is one streaming pass and one transaction:

1. each CSV row is parsed and validated in Python (bounded caches only: constant memory) and streamed into a
   temporary staging table (PostgreSQL `COPY`; plain batched inserts elsewhere, e.g. SQLite under `make run`);
   every bad row is reported with its line number as it is met, and staging stops at the first one;
2. if no row was bad, set-based SQL finds the duplicates (secret already known, or, without a secret, the same
   (SIRET, label, issued_at), in the database or earlier in the file) and inserts clients, contacts, tokens, their
   privileges and contacts and one IMPORTED event per token with a constant number of statements.

A row without a secret gets a new one, derived as HMAC-SHA256(run key, line number) with a random 256-bit run key
that lives only in memory: its digest is staged in step 1, and the secret itself is rebuilt from the line number
only for the rows actually imported, when `--secrets-out` is written. No plain secret ever reaches the database.
"""

import base64
import contextlib
import csv
import datetime as dt
import hashlib
import hmac
import io
import operator
import os
import re
import secrets as secrets_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from . import credentials, validity
from .models import Client, Contact, Origin, Privilege, Token, TokenEvent
from .siret import siret_error

COLUMNS = ("siret", "name", "label", "privileges", "issued_at", "origin", "contacts", "secret")
IMPORT_CONTACT_ROLE = Contact.Role.REQUESTER  # imported contacts: the people who asked for the token
MAX_SECRET_LENGTH = 4096  # what /v2/privileges accepts
MIN_ISSUED_AT = dt.date(1970, 1, 1)
NAME_MAX = Client._meta.get_field("name").max_length
LABEL_MAX = Token._meta.get_field("label").max_length
EMAIL_MAX = Contact._meta.get_field("email").max_length
STAGE_BATCH = 2000
PAGE = 10_000


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


# A strict subset of what Django's validate_email accepts (plain ASCII dot-atom @ hostname), checked first because
# it is much faster; anything else goes through Django's validator.
_SIMPLE_EMAIL = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def check_email(value: str) -> str:
    value = value.strip()
    if len(value) > EMAIL_MAX:
        raise InvalidValue(f"adresse e-mail trop longue : {shown(value)}.")
    if _SIMPLE_EMAIL.fullmatch(value):
        return value
    try:
        validate_email(value)
    except ValidationError:
        raise InvalidValue(f"adresse e-mail invalide : {shown(value)}.") from None
    return value


def check_emails(values: Iterable[str]) -> list[str]:
    """Valid addresses, deduplicated case-insensitively (first spelling kept)."""
    seen: dict[str, str] = {}
    for value in values:
        email = check_email(value)
        seen.setdefault(email.lower(), email)
    return list(seen.values())


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


class StagedRow(NamedTuple):
    """A validated row, in the column order of the staging table (dates already in the database's text form)."""

    line: int
    siret: str
    name: str
    label: str
    issued_at: str
    expires_at: str
    origin: str
    privs: str  # privilege ids, space-separated
    contacts: str  # e-mails, space-separated
    has_secret: bool
    digest: str
    prefix: str
    public_id: str


STAGE_COLUMNS = StagedRow._fields


def random_uuid_hex() -> str:
    """uuid.uuid4().hex, without the UUID object."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


class RowValidator:
    """Validates CSV rows into StagedRow; caches are bounded so memory stays constant."""

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
        self.catalogue = dict(Privilege.objects.values_list("code", "id"))
        self.secret_prefix = settings.TOKEN_SECRET_PREFIX
        self.tz = validity.local_tz()
        self.months = settings.TOKEN_VALIDITY_MONTHS
        if connection.vendor == "postgresql":
            self.format_datetime = dt.datetime.isoformat
        else:
            self.format_datetime = connection.ops.adapt_datetimefield_value
        # Keyed HMAC states, copied per row (saves the key schedule): digest == credentials.digest.
        self._digest_base = hmac.new(settings.TOKEN_DIGEST_KEY.encode(), digestmod=hashlib.sha256)
        self._run_base = hmac.new(run_key, digestmod=hashlib.sha256)
        # Bounded caches: SIRETs, privilege lists, dates and e-mails repeat a lot across rows.
        self._siret = lru_cache(maxsize=131_072)(check_siret)
        self._privileges = lru_cache(maxsize=4096)(self._privileges_uncached)
        self._issued = lru_cache(maxsize=131_072)(self._issued_uncached)
        self._emails = lru_cache(maxsize=131_072)(self._emails_uncached)

    def _privileges_uncached(self, raw: str) -> str:
        return " ".join(map(str, check_privileges(split_list(raw), self.catalogue)))

    def _issued_uncached(self, raw: str) -> tuple[dt.datetime, str, str, str]:
        issued = parse_issued_at(raw, now=self.now)
        expires = fast_expiry(issued, self.tz, self.months)
        fmt = self.format_datetime
        return issued, fmt(issued), fmt(expires), validity.default_origin(issued)

    def _emails_uncached(self, raw: str) -> str:
        return " ".join(check_emails(split_list(raw)))

    def digest(self, secret: str) -> str:
        h = self._digest_base.copy()
        h.update(secret.encode())
        return h.hexdigest()

    def generated_secret(self, line: int) -> str:
        """The secret of a row without one: same format as credentials.generate_secret (prefix + 256 bits)."""
        h = self._run_base.copy()
        h.update(str(line).encode())
        return self.secret_prefix + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()

    def validate(self, line: int, fields: list[str]) -> StagedRow:
        if len(fields) != self.width:
            raise InvalidValue(f"{len(fields)} champ(s) au lieu de {self.width}.")
        siret, name, label, privileges, issued_at, origin, contacts, secret = self._pick(fields)
        siret = self._siret(siret)
        name, label = name.strip(), label.strip()
        if len(name) > NAME_MAX or len(label) > LABEL_MAX:
            check_text(name, what="nom", max_length=NAME_MAX)
            check_text(label, what="libellé", max_length=LABEL_MAX)
        privs = self._privileges(privileges.strip())
        issued, issued_text, expires_text, default_origin = self._issued(issued_at.strip())
        origin = origin.strip()
        origin = check_origin(origin, issued) if origin else default_origin
        emails = self._emails(contacts.strip())
        secret = secret.strip()
        if secret:
            check_secret(secret)
            has_secret = True
        else:
            secret = self.generated_secret(line)
            has_secret = False
        return StagedRow(
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
            self.digest(secret),
            credentials.display_prefix(secret),
            random_uuid_hex(),
        )


# --------------------------------------------------------------------------------------------------
# Reading: physical line numbers, UTF-8 checked line by line
# --------------------------------------------------------------------------------------------------


class BadEncoding(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _decoded_lines(binary: io.BufferedIOBase, counter: list[int]) -> Iterator[str]:
    for raw in binary:
        counter[0] += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadEncoding(counter[0]) from None
        if counter[0] == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


def read_rows(binary: io.BufferedIOBase) -> Iterator[tuple[int, list[str]]]:
    """(line number of the row's first physical line, fields), blank lines skipped; the header is line 1."""
    counter = [0]
    reader = csv.reader(_decoded_lines(binary, counter), strict=True)
    last = 0
    try:
        for fields in reader:
            start = last + 1
            last = counter[0]
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            yield start, fields
    except csv.Error as exc:
        raise InvalidCsv(last + 1, f"CSV mal formé : {one_line(exc)}.") from None


class InvalidCsv(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


# --------------------------------------------------------------------------------------------------
# Staging
# --------------------------------------------------------------------------------------------------


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """A value in PostgreSQL's COPY text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


class Stage:
    """A temporary table of validated rows; `add` streams (COPY on PostgreSQL), `close` flushes."""

    def __init__(self, cursor, *, token_ids: bool = False) -> None:
        self.cursor = cursor
        self.pg = connection.vendor == "postgresql"
        ts = "timestamp with time zone" if self.pg else "datetime"
        for table in ("imp_new", "imp_row"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        on_commit = " ON COMMIT DROP" if self.pg else ""
        cursor.execute(
            f"CREATE TEMPORARY TABLE imp_row (line integer NOT NULL, siret varchar(14) NOT NULL, "
            f"name varchar(255) NOT NULL, label varchar(255) NOT NULL, issued_at {ts} NOT NULL, "
            f"expires_at {ts} NOT NULL, origin varchar(32) NOT NULL, privs text NOT NULL, contacts text NOT NULL, "
            f"has_secret boolean NOT NULL, digest varchar(64) NOT NULL, prefix varchar(16) NOT NULL, "
            f"public_id {'uuid' if self.pg else 'char(32)'} NOT NULL){on_commit}"
        )
        self.count = 0
        self._batch: list = []
        self._copy_cm = self._copy = None
        if self.pg:
            self._copy_cm = cursor.copy(f"COPY imp_row ({', '.join(STAGE_COLUMNS)}) FROM STDIN")
            self._copy = self._copy_cm.__enter__()

    def add(self, row: StagedRow) -> None:
        self.count += 1
        if self.pg:
            # Hand-formatted COPY text: several times faster than write_row for these simple types.
            self._batch.append(
                f"{row.line}\t{row.siret}\t{copy_text(row.name)}\t{copy_text(row.label)}\t{row.issued_at}\t"
                f"{row.expires_at}\t{row.origin}\t{row.privs}\t{row.contacts}\t{'t' if row.has_secret else 'f'}\t"
                f"{row.digest}\t{copy_text(row.prefix)}\t{row.public_id}\n"
            )
        else:
            self._batch.append(row)
        if len(self._batch) >= STAGE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        if self.pg:
            self._copy.write("".join(self._batch).encode())
        else:
            self.cursor.executemany(
                f"INSERT INTO imp_row ({', '.join(STAGE_COLUMNS)}) VALUES ({', '.join(['%s'] * 13)})",
                self._batch,
            )
        self._batch = []

    def close(self) -> None:
        self._flush()
        if self._copy_cm is not None:
            cm, self._copy_cm, self._copy = self._copy_cm, None, None
            cm.__exit__(None, None, None)


# --------------------------------------------------------------------------------------------------
# Set-based writes
# --------------------------------------------------------------------------------------------------


def _t(model, field: str | None = None) -> str:
    if field is None:
        return connection.ops.quote_name(model._meta.db_table)
    return connection.ops.quote_name(model._meta.get_field(field).column)


def _expanded(kind: str) -> str:
    """(line, value) rows of the kept rows' space-separated `privs` or `contacts`."""
    if connection.vendor == "postgresql":
        cast = "::integer" if kind == "privs" else ""
        return (
            f"(SELECT n.line, v.value{cast} AS value FROM imp_new n "
            f"CROSS JOIN LATERAL unnest(string_to_array(n.{kind}, ' ')) AS v(value) WHERE n.{kind} <> '')"
        )
    # Generic SQL: a recursive split, fine for the volumes of the embedded database.
    return (
        f"(WITH RECURSIVE s(line, value, rest) AS ("
        f" SELECT line, '', {kind} || ' ' FROM imp_new WHERE {kind} <> ''"
        f" UNION ALL SELECT line, substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)"
        f" FROM s WHERE rest <> '') SELECT line, "
        + ("CAST(value AS integer)" if kind == "privs" else "value")
        + " AS value FROM s WHERE value <> '')"
    )


def _pg() -> bool:
    return connection.vendor == "postgresql"


def select_new_rows(cursor, *, assign_ids: bool) -> int:
    """imp_new := the staged rows that are not duplicates; returns their count.

    On PostgreSQL with `assign_ids`, each kept row also draws its token id from the token table's sequence, so that
    privileges, contacts and events are inserted without joining back on the token table.
    """
    token, client = _t(Token), _t(Client)
    cursor.execute("DROP TABLE IF EXISTS imp_new")
    on_commit, token_id = "", ""
    if _pg():
        cursor.execute("ANALYZE imp_row")
        on_commit = " ON COMMIT DROP"
        if assign_ids:
            token_id = f", nextval(pg_get_serial_sequence('{Token._meta.db_table}', 'id')) AS token_id"
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE imp_new{on_commit} AS
        SELECT r.line, r.siret, r.name, r.label, r.issued_at, r.expires_at, r.origin, r.privs, r.contacts,
               r.has_secret, r.digest, r.prefix, r.public_id{token_id}
        FROM imp_row r
        JOIN (
            -- The window sorts run on the narrow key columns only, then the kept lines are joined back.
            SELECT w.line FROM (
                SELECT line, has_secret, digest, siret, label, issued_at,
                       ROW_NUMBER() OVER (PARTITION BY digest ORDER BY line) AS rn_secret,
                       ROW_NUMBER() OVER (PARTITION BY siret, label, issued_at ORDER BY line) AS rn_key
                FROM imp_row
            ) w
            WHERE w.rn_secret = 1
              AND (w.has_secret OR w.rn_key = 1)
              AND NOT EXISTS (SELECT 1 FROM {token} t WHERE t.secret_digest = w.digest)
              AND (w.has_secret OR NOT EXISTS (
                    SELECT 1 FROM {token} t JOIN {client} c ON c.id = t.client_id
                    WHERE c.siret = w.siret AND t.label = w.label AND t.issued_at = w.issued_at))
        ) kept ON kept.line = r.line
        ORDER BY r.line
        """
    )
    cursor.execute("SELECT COUNT(*) FROM imp_new")
    return cursor.fetchone()[0]


def _analyze(cursor, *tables: str) -> None:
    """Fresh planner statistics after a bulk insert, so that the next joins get hash joins, not nested loops."""
    if _pg():
        cursor.execute(f"ANALYZE {', '.join(tables)}")


def write_new_rows(cursor, *, now: dt.datetime) -> None:
    """Clients, contacts, tokens, token privileges, token contacts and IMPORTED events of imp_new."""
    token, client, contact = _t(Token), _t(Client), _t(Contact)
    role = IMPORT_CONTACT_ROLE.value
    now = connection.ops.adapt_datetimefield_value(now)
    if _pg():
        json_param = "CAST(%s AS jsonb)"
        id_column, id_value = "id, ", "n.token_id, "
        join_token, token_id = "", "n.token_id"
    else:
        json_param = "%s"
        id_column = id_value = ""
        join_token, token_id = f"JOIN {token} t ON t.secret_digest = n.digest", "t.id"
    cursor.execute("CREATE INDEX imp_new_siret ON imp_new (siret, line)")
    _analyze(cursor, "imp_new")
    # Clients: created with the first name the file gives them; a placeholder name (the SIRET) is replaced,
    # as services.client_get_or_create does.
    first_name = (
        "SELECT n.name FROM imp_new n WHERE n.siret = {0}.siret AND n.name <> '' ORDER BY n.line LIMIT 1"
    )
    cursor.execute(
        f"""
        INSERT INTO {client} (name, siret, created_at)
        SELECT COALESCE(({first_name.format("s")}), s.siret), s.siret, %s
        FROM (SELECT DISTINCT siret FROM imp_new) s
        WHERE NOT EXISTS (SELECT 1 FROM {client} c WHERE c.siret = s.siret)
        """,
        [now],
    )
    cursor.execute(
        f"""
        UPDATE {client} SET name = ({first_name.format(client)})
        WHERE name = siret AND EXISTS (SELECT 1 FROM imp_new n WHERE n.siret = {client}.siret AND n.name <> '')
        """
    )
    _analyze(cursor, client)
    cursor.execute(
        f"""
        INSERT INTO {contact} (client_id, email, name, phone, role)
        SELECT c.id, MIN(x.value), '', '', %s
        FROM {_expanded("contacts")} x
        JOIN imp_new n ON n.line = x.line
        JOIN {client} c ON c.siret = n.siret
        WHERE NOT EXISTS (
            SELECT 1 FROM {contact} k WHERE k.client_id = c.id AND LOWER(k.email) = LOWER(x.value) AND k.role = %s)
        GROUP BY c.id, LOWER(x.value)
        """,
        [role, role],
    )
    _analyze(cursor, contact)
    with _references_checked_here(cursor):
        _write_tokens(
            cursor,
            now=now,
            id_column=id_column,
            id_value=id_value,
            join_token=join_token,
            token_id=token_id,
            json_param=json_param,
        )


@contextlib.contextmanager
def _references_checked_here(cursor):
    """On PostgreSQL, skip the per-row foreign-key triggers of the bulk token writes when the role may.

    Each foreign key written below comes from a join on the referenced table inside this transaction: clients,
    contacts and privileges are locked FOR KEY SHARE first (so no one can delete them before we commit), and the
    token ids are this transaction's own rows. The per-row RI triggers would re-check millions of rows one by
    one (most of an import's time), so they are skipped with `session_replication_role = replica` when the role
    is allowed to set it (superuser, or PostgreSQL 15+ `GRANT SET ON PARAMETER session_replication_role`);
    otherwise the triggers run as usual. The setting is restored before anything else happens.
    """
    if not _pg():
        yield
        return
    client, contact, privilege = _t(Client), _t(Contact), _t(Privilege)
    cursor.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {privilege} FOR KEY SHARE) x")
    clients = f"SELECT c.id FROM {client} c WHERE c.siret IN (SELECT siret FROM imp_new)"
    cursor.execute(f"SELECT COUNT(*) FROM ({clients} FOR KEY SHARE) x")
    cursor.execute(
        f"""SELECT COUNT(*) FROM (SELECT 1 FROM {contact} k WHERE k.role = %s AND k.client_id IN ({clients})
            FOR KEY SHARE) x""",
        [IMPORT_CONTACT_ROLE.value],
    )
    cursor.execute("SELECT current_setting('session_replication_role')")
    previous = cursor.fetchone()[0]
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        yield  # not allowed: the foreign-key triggers check every row
        return
    try:
        yield
    finally:
        cursor.execute("SELECT set_config('session_replication_role', %s, true)", [previous])


def _write_tokens(cursor, *, now, id_column, id_value, join_token, token_id, json_param) -> None:
    token, client, contact, event = _t(Token), _t(Client), _t(Contact), _t(TokenEvent)
    token_privileges = connection.ops.quote_name(Token.privileges.through._meta.db_table)
    token_contacts = connection.ops.quote_name(Token.contacts.through._meta.db_table)
    role = IMPORT_CONTACT_ROLE.value
    cursor.execute(
        f"""
        INSERT INTO {token} ({id_column}public_id, client_id, label, issued_at, expires_at, origin, secret_prefix,
                             secret_digest, revocation_reason, created_at)
        SELECT {id_value}n.public_id, c.id, n.label, n.issued_at, n.expires_at, n.origin, n.prefix, n.digest, '', %s
        FROM imp_new n JOIN {client} c ON c.siret = n.siret
        ORDER BY n.line
        """,
        [now],
    )
    cursor.execute(
        f"""
        INSERT INTO {token_privileges} (token_id, privilege_id)
        SELECT {token_id}, x.value
        FROM {_expanded("privs")} x
        JOIN imp_new n ON n.line = x.line {join_token}
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {token_contacts} (token_id, contact_id)
        SELECT DISTINCT {token_id}, k.id
        FROM {_expanded("contacts")} x
        JOIN imp_new n ON n.line = x.line {join_token}
        JOIN {client} c ON c.siret = n.siret
        JOIN {contact} k ON k.client_id = c.id AND LOWER(k.email) = LOWER(x.value) AND k.role = %s
        """,
        [role],
    )
    cursor.execute(
        f"""
        INSERT INTO {event} (token_id, kind, at, reason, data)
        SELECT {token_id}, %s, %s, '', {json_param}
        FROM imp_new n {join_token}
        """,
        [TokenEvent.Kind.IMPORTED.value, now, '{"via": "import_tokens"}'],
    )


def generated_lines(cursor) -> Iterator[int]:
    """Line numbers of the imported rows that had no secret, in file order, paged (constant memory)."""
    last = 0
    while True:
        cursor.execute(
            "SELECT line FROM imp_new WHERE NOT has_secret AND line > %s ORDER BY line LIMIT %s", [last, PAGE]
        )
        lines = [r[0] for r in cursor.fetchall()]
        if not lines:
            return
        yield from lines
        last = lines[-1]


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


def _pg_session_tuning(cursor) -> None:
    """Memory for this transaction's sorts and staging tables (temp_buffers only takes before any temp table)."""
    cursor.execute("SET LOCAL work_mem = '256MB'")
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL temp_buffers = '512MB'")
    except DatabaseError:
        pass  # this session already used temporary tables: keep its setting


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
) -> ImportResult:
    """Import the CSV `source` (binary) all-or-nothing; every bad row goes to `on_error(line, message)`."""
    result = ImportResult()
    now = timezone.now()
    run_key = secrets_module.token_bytes(32)
    tmp_out = None
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                _pg_session_tuning(cursor)
                # Two imports at once would race on the duplicate checks: one at a time.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x70CE1])
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
                try:
                    validator = RowValidator(first[1], now=now, run_key=run_key)
                except InvalidValue as exc:
                    on_error(1, str(exc))
                    result.errors += 1
                    raise _Abort from None
                stage = Stage(cursor)
                try:
                    for line, fields in rows:
                        result.rows += 1
                        try:
                            staged = validator.validate(line, fields)
                        except InvalidValue as exc:
                            result.errors += 1
                            on_error(line, str(exc))
                            continue
                        if not result.errors:
                            stage.add(staged)
                        if on_progress and result.rows % progress_every == 0:
                            on_progress(f"{result.rows} lignes lues")
                finally:
                    stage.close()
            except BadEncoding as exc:
                on_error(exc.line, "encodage invalide : UTF-8 attendu.")
                result.errors += 1
                raise _Abort from None
            except InvalidCsv as exc:
                on_error(exc.line, exc.message)
                result.errors += 1
                raise _Abort from None
            if result.errors:
                raise _Abort
            if on_progress:
                on_progress(f"{result.rows} lignes valides ; recherche des doublons…")
            result.imported = select_new_rows(cursor, assign_ids=not dry_run)
            result.duplicates = result.rows - result.imported
            if dry_run:
                transaction.set_rollback(True)
                return result
            if on_progress:
                on_progress(f"écriture de {result.imported} jetons…")
            write_new_rows(cursor, now=now)
            if secrets_out:
                tmp_out = f"{secrets_out}.{os.getpid()}.tmp"
                fd = os.open(tmp_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with open(fd, "w", encoding="utf-8", newline="") as out:
                    for line in generated_lines(cursor):
                        out.write(f"{line},{validator.generated_secret(line)}\n")
                        result.generated += 1
            else:
                cursor.execute("SELECT COUNT(*) FROM imp_new WHERE NOT has_secret")
                result.generated = cursor.fetchone()[0]
            for table in ("imp_new", "imp_row"):
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
        if tmp_out:
            os.replace(tmp_out, secrets_out)
            tmp_out = None
    except _Abort:
        pass
    finally:
        if tmp_out and os.path.exists(tmp_out):
            os.unlink(tmp_out)
    return result
