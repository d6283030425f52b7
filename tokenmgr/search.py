"""Text search that ignores accents and case: "echeance" finds "échéance", "ECHEANCE" too.

`unaccented(path)` is the one place that chooses per database vendor:
- PostgreSQL: the `unaccent` extension (created by a migration of the tokens app), through django.contrib.postgres's
  `__unaccent` transform, applied to the column and to the searched text alike;
- SQLite: the same transform, served by a Python function registered as `UNACCENT` on each new connection
  (`fold`, below), so that one query works on both;
- any other vendor: the plain path (case-insensitive only).

Views and admin search fields go through `unaccented` / `contains_any`, never through `__unaccent` directly.
"""

import unicodedata

from django.db import connection, connections
from django.db.backends.signals import connection_created
from django.db.models import Q

UNACCENT_VENDORS = frozenset({"postgresql", "sqlite"})

# Letters that no Unicode decomposition splits, mapped as PostgreSQL's unaccent.rules does.
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ø": "o", "Ø": "O"})


def fold(text: str | None) -> str | None:
    """`text` without its accents (NFKD, combining marks dropped, ligatures spelt out); None stays None."""
    if text is None:
        return None
    decomposed = unicodedata.normalize("NFKD", str(text).translate(_LIGATURES))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def unaccented(path: str) -> str:
    """The lookup path comparing `path` without accents on this database (see the module docstring)."""
    return f"{path}__unaccent" if connection.vendor in UNACCENT_VENDORS else path


def contains_any(paths: list[str], term: str) -> Q:
    """Rows where any of `paths` contains `term`, ignoring accents and case."""
    condition = Q()
    for path in paths:
        condition |= Q(**{f"{unaccented(path)}__icontains": term})
    return condition


def register_sqlite_unaccent(sender, connection, **kwargs) -> None:
    """connection_created receiver: gives SQLite connections the UNACCENT() function that PostgreSQL's extension
    provides."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("UNACCENT", 1, fold, deterministic=True)


def connect() -> None:
    """Called once at start-up (TokensConfig.ready); also covers a connection opened before it."""
    connection_created.connect(register_sqlite_unaccent, dispatch_uid="tokenmgr-sqlite-unaccent")
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            register_sqlite_unaccent(None, conn)
