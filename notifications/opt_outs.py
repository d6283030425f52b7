"""Reminder opt-outs ("ce jeton n'est plus utilisé"): the holders decline renewal, the reminders stop.

Reversible until the token's expiry; each change is audited on the token. Whom the reminders skip is the reminder rule's
business (notifications.rules).
"""

from django.db import transaction
from django.utils.translation import gettext as _

from tokenmgr.errors import ApplicationError
from tokens.models import Token, TokenEvent

from .models import ReminderOptOut

DECLINE_AUDIT = "reminders_declined"
UNDECLINE_AUDIT = "reminders_resumed"


# ---------------------------------------------------------------------------------------------------------------
@transaction.atomic
def token_reminders_decline(*, token: Token, by) -> ReminderOptOut:
    """Stop the reminders of a token its holders no longer use. The token keeps working until its expiry."""
    token = Token.objects.select_for_update().get(pk=token.pk)
    if not token.is_usable():
        raise ApplicationError(_("Ce jeton n'est plus actif."), code="not_usable")
    if ReminderOptOut.objects.filter(token=token).exists():
        raise ApplicationError(_("Le renouvellement de ce jeton est déjà décliné."), code="already_declined")
    opt_out = ReminderOptOut.objects.create(token=token, by=by)
    TokenEvent.objects.create(
        token=token, kind=TokenEvent.Kind.UPDATED, actor=by, data={"action": DECLINE_AUDIT}
    )
    return opt_out


@transaction.atomic
def token_reminders_resume(*, token: Token, by) -> None:
    """Undo a decline: possible until the token's expiry."""
    token = Token.objects.select_for_update().get(pk=token.pk)
    if not token.is_usable():
        raise ApplicationError(
            _("Ce jeton a expiré ou a été révoqué : le choix ne peut plus être annulé."), code="not_usable"
        )
    deleted, _rows = ReminderOptOut.objects.filter(token=token).delete()
    if not deleted:
        raise ApplicationError(_("Le renouvellement de ce jeton n'était pas décliné."), code="not_declined")
    TokenEvent.objects.create(
        token=token, kind=TokenEvent.Kind.UPDATED, actor=by, data={"action": UNDECLINE_AUDIT}
    )
