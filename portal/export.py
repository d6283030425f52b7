"""The integrator's CSV export of their tokens: the dashboard's list (same filters, same order), one token a line.

Written in the French Excel dialect of tokens.exports (`;`, UTF-8 BOM, CRLF, every cell neutralised against
formulas), dates as dd/mm/yyyy in TIME_ZONE. Never a secret: the display prefix only.
"""

from collections.abc import Iterable, Iterator

from django.utils.translation import gettext_lazy as _

from tokens import validity
from tokens.models import TokenStatus

from .selectors import DashboardRow

HEADER = [
    _("Client"),
    _("SIRET"),
    _("Libellé"),
    _("Origine"),
    _("Préfixe"),
    _("Statut"),
    _("Émis le"),
    _("Expire le"),
    _("Jours restants"),
    _("Révoqué le"),
    _("Prochain rappel"),
    _("Demande en cours"),
    _("Privilèges"),
    _("Codes des privilèges"),
    _("Contacts"),
]


def _day(moment) -> str:
    return validity.local_date(moment).strftime("%d/%m/%Y") if moment else ""


def export_rows(rows: Iterable[DashboardRow]) -> Iterator[list]:
    """One CSV line per dashboard row (tokens fetched with their client, privileges and contacts)."""
    for row in rows:
        token = row.token
        state = TokenStatus(token.state)
        privileges = sorted(token.privileges.all(), key=lambda p: p.code)
        yield [
            token.client.name,
            token.client.siret,
            token.label,
            token.get_origin_display(),
            f"{token.secret_prefix}…",
            state.label,
            _day(token.issued_at),
            _day(token.expires_at),
            "" if state == TokenStatus.REVOKED else row.days_left,
            _day(token.revoked_at),
            row.next_reminder.day.strftime("%d/%m/%Y") if row.next_reminder else "",
            " ; ".join(f"{r.get_kind_display()} ({r.get_state_display()})" for r in row.pending_requests),
            " ; ".join(p.label for p in privileges),
            " ".join(p.code for p in privileges),
            " ".join(c.email for c in token.contacts.all()),
        ]
