"""Writes of the staff second factor: enrolment, recovery codes, reset (audited)."""

import logging

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

log = logging.getLogger(__name__)

TOTP_DEVICE_NAME = "authenticator"
RECOVERY_DEVICE_NAME = "recovery codes"


def totp_enrolment_start(*, user) -> TOTPDevice:
    """The user's pending (unconfirmed) authenticator: one at a time, its secret kept until confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


@transaction.atomic
def totp_enrolment_confirm(*, device: TOTPDevice, code: str) -> list[str] | None:
    """Confirm a pending authenticator with one of its codes; returns fresh recovery codes, or None if refused."""
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
    if device.confirmed or not device.verify_token(code):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user=device.user, confirmed=False).delete()
    log.info("staff second factor enrolled: user id=%s", device.user_id)
    return recovery_codes_issue(user=device.user)


@transaction.atomic
def recovery_codes_issue(*, user) -> list[str]:
    """A new set of one-time recovery codes (the previous set stops working); shown once, stored as issued."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.STAFF_2FA_RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


@transaction.atomic
def second_factor_reset(*, user, by) -> int:
    """Forget every device of `user` (their verified sessions stop verifying): they enrol again at next login.

    Audited in the admin's history of `user` (LogEntry: who, whom, when) and as a log line.
    """
    deleted = 0
    for model in (TOTPDevice, StaticDevice):
        deleted += model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
    LogEntry.objects.log_actions(
        user_id=by.pk,
        queryset=[user],
        action_flag=CHANGE,
        change_message="Second facteur réinitialisé : nouvel enrôlement requis à la prochaine connexion.",
        single_object=True,
    )
    log.warning(
        "staff second factor reset: user id=%s (%s) by user id=%s (%s), %s device(s) deleted",
        user.pk,
        user.get_username(),
        by.pk,
        by.get_username(),
        deleted,
    )
    return deleted
