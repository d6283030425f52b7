"""The `period` parameter of provider_availabilities (CONTRACT §5): grammar and window start."""

import datetime as dt
import re

from tokens import validity

# N >= 1 in ASCII digits without sign or leading zero; units are case-sensitive (M months, m minutes).
# Nine digits at most: anything longer is beyond the maximum period for every unit, and never overflows.
PERIOD_RE = re.compile(r"([1-9][0-9]{0,8})([yMwdhms])")
UNITS = {
    "y": "an(s)",
    "M": "mois",
    "w": "semaine(s)",
    "d": "jour(s)",
    "h": "heure(s)",
    "m": "minute(s)",
    "s": "seconde(s)",
}
DEFAULT_PERIOD = "6M"
MAX_PERIOD = "10y"


class PeriodError(ValueError):
    pass


def parse_period(text: str) -> tuple[int, str]:
    match = PERIOD_RE.fullmatch(text)
    if match is None:
        raise PeriodError(
            f"`period` doit être de la forme <N><unité> (N entier ≥ 1 sans zéro initial, unité parmi "
            f"y M w d h m s), par exemple {DEFAULT_PERIOD}."
        )
    return int(match.group(1)), match.group(2)


def _local_shift(now: dt.datetime, days: int) -> dt.datetime:
    """Same wall-clock time in TIME_ZONE, `days` calendar days earlier (resolved like validity.add_months)."""
    tz = validity.local_tz()
    local = now.astimezone(tz).replace(tzinfo=None) - dt.timedelta(days=days)
    return local.replace(tzinfo=tz).astimezone(dt.UTC)


def step_back(now: dt.datetime, n: int, unit: str) -> dt.datetime:
    """now − N units: calendar units (y M w d) in TIME_ZONE, elapsed time for h m s. May raise OverflowError."""
    if unit == "y":
        return validity.add_months(now, -12 * n)
    if unit == "M":
        return validity.add_months(now, -n)
    if unit == "w":
        return _local_shift(now, 7 * n)
    if unit == "d":
        return _local_shift(now, n)
    seconds = {"h": 3600, "m": 60, "s": 1}[unit] * n
    return now - dt.timedelta(seconds=seconds)


def window_start(text: str, now: dt.datetime) -> dt.datetime:
    """The first instant of the window `now − period ≤ t ≤ now`; PeriodError if malformed or beyond MAX_PERIOD."""
    n, unit = parse_period(text)
    limit = step_back(now, *parse_period(MAX_PERIOD))
    try:
        start = step_back(now, n, unit)
    except (OverflowError, ValueError):
        start = None
    if start is None or start < limit:
        raise PeriodError(f"`period` ne peut pas dépasser {MAX_PERIOD} (10 ans).")
    return start
