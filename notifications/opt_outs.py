"""Reminder opt-outs ("ce jeton n'est plus utilisé"): the holders decline renewal, the reminders stop.

Reversible until the token's expiry; each change is audited on the token.
"""

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

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
        raise ValidationError(_("Ce jeton n'est plus actif."), code="not_usable")
    if ReminderOptOut.objects.filter(token=token).exists():
        raise ValidationError(_("Le renouvellement de ce jeton est déjà décliné."), code="already_declined")
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
        raise ValidationError(_("Ce jeton a expiré ou a été révoqué : le choix ne peut plus être annulé."))
    deleted, _rows = ReminderOptOut.objects.filter(token=token).delete()
    if not deleted:
        raise ValidationError(_("Le renouvellement de ce jeton n'était pas décliné."), code="not_declined")
    TokenEvent.objects.create(
        token=token, kind=TokenEvent.Kind.UPDATED, actor=by, data={"action": UNDECLINE_AUDIT}
    )


def reminders_declined_token_ids(ids: Iterable[int]) -> set[int]:
    """Among token ids `ids`, those whose holders declined renewal: the reminder sweep must skip them."""
    ids = list(ids)
    if not ids:
        return set()
    return set(ReminderOptOut.objects.filter(token_id__in=ids).values_list("token_id", flat=True))


def tokens_without_declined(qs: QuerySet) -> QuerySet:
    """`qs` minus the tokens whose renewal was declined (for the sweep's range query, as a subquery)."""
    return qs.exclude(reminder_opt_out__isnull=False)
