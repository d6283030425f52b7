"""Calendar rules of a token's life (docs/domain.md), computed in one place."""

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

# Tokens issued before this date came through demarches-simplifiees.fr.
API_GOUV_SINCE = dt.date(2019, 9, 1)


def local_tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Same wall-clock time in TIME_ZONE, `months` calendar months later; missing days clamp to the month's end.

    A wall-clock time that does not exist on the target day (spring-forward gap) resolves like zoneinfo does with
    fold=0, i.e. it lands just after the gap.
    """
    if timezone.is_naive(moment):
        raise ValueError("aware datetime required")
    tz = local_tz()
    local = moment.astimezone(tz)
    year, month = divmod(local.month - 1 + months, 12)
    year += local.year
    month += 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day, fold=0).astimezone(dt.UTC)


def expiry_for(issued_at: dt.datetime) -> dt.datetime:
    return add_months(issued_at, settings.TOKEN_VALIDITY_MONTHS)


def local_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(local_tz()).date()


def today() -> dt.date:
    return local_date(timezone.now())


def days_left(expires_at: dt.datetime, on: dt.date | None = None) -> int:
    """Calendar days in TIME_ZONE: expires_at.date() − today."""
    return (local_date(expires_at) - (on or today())).days


def start_of_day(day: dt.date) -> dt.datetime:
    """First instant of `day` in TIME_ZONE, as an aware UTC datetime."""
    return dt.datetime.combine(day, dt.time.min).replace(tzinfo=local_tz()).astimezone(dt.UTC)


def default_origin(issued_at: dt.datetime) -> str:
    return "demarches_simplifiees" if local_date(issued_at) < API_GOUV_SINCE else "api_gouv"
