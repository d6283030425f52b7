"""CSV exports that are safe to open in a spreadsheet.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by Excel,
LibreOffice and Google Sheets (CSV/formula injection): a label typed by an applicant could run
`=HYPERLINK(...)` or a DDE command on an administrator's machine. Every text cell of every export goes through
`neutralise_cell`, which prefixes such a cell with a single quote, as OWASP recommends: the spreadsheet then shows
the text as typed. Values typed as numbers (`int`, `float`, `Decimal`, not `bool`) are written unchanged, so a
negative count stays a number; the same characters in a *string* (`"-12"`) are neutralised, because the export
cannot tell a number from a formula once it is text.

defusedcsv (PyPI) does the same job for a narrower set: it leaves tab and carriage return alone and lets
numeric-looking strings through, so it is not used.

Two dialects: the plain one (`,` separator, no BOM, CRLF line ends as RFC 4180 says) and the French Excel one
(`;` separator, since `,` is the decimal separator there; a UTF-8 byte-order mark, without which Excel reads the
file as Windows-1252; CRLF).
"""

import csv
import decimal
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from django.http import StreamingHttpResponse
from django.utils import timezone

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: object) -> object:
    """One cell, safe for a spreadsheet: formula-looking text gets a leading `'`; numbers are kept as numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | decimal.Decimal):
        return value
    text = str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


@dataclass(frozen=True)
class CsvDialect:
    name: str
    delimiter: str
    bom: bool
    lineterminator: str = "\r\n"


PLAIN = CsvDialect(name="plain", delimiter=",", bom=False)
EXCEL_FR = CsvDialect(name="excel-fr", delimiter=";", bom=True)
DIALECTS = {d.name: d for d in (PLAIN, EXCEL_FR)}


class _Echo:
    """A file-like object whose write() returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(
    header: Sequence[object], rows: Iterable[Sequence[object]], dialect: CsvDialect
) -> Iterator[str]:
    """The lines of a CSV document (header first), every cell neutralised."""
    writer = csv.writer(
        _Echo(), delimiter=dialect.delimiter, lineterminator=dialect.lineterminator, quoting=csv.QUOTE_MINIMAL
    )
    first = writer.writerow([neutralise_cell(str(c)) for c in header])
    yield ("\ufeff" + first) if dialect.bom else first
    for row in rows:
        yield writer.writerow([neutralise_cell(c) for c in row])


def csv_response(
    *, header: Sequence[object], rows: Iterable[Sequence[object]], basename: str, dialect: CsvDialect = PLAIN
) -> StreamingHttpResponse:
    """A streamed CSV attachment named `<basename>-<local time>[-excel].csv`."""
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    suffix = "-excel" if dialect is EXCEL_FR else ""
    response = StreamingHttpResponse(
        (line.encode("utf-8") for line in csv_lines(header, rows, dialect)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{basename}-{stamp}{suffix}.csv"'
    response["Cache-Control"] = "no-store"
    return response
