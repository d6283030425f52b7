"""The `period` parameter of provider_availabilities (docs/http-api.md): grammar and window start."""

import datetime as dt
import re

from tokens import validity

# N >= 1 in ASCII digits without sign or leading zero; units are case-sensitive (M months, m minutes).
# Nine digits at most: anything longer is beyond the maximum period for every unit, and never overflows.
PERIOD_RE = re.compile(r"([1-9][0-9]{0,8})([yMwdhms])")
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


# Largest N per unit that is within MAX_PERIOD whatever `now` is (10 y is 3652 to 3653 days, ±1 h of DST).
SAFE_MAX = {
    "y": 10,
    "M": 120,
    "w": 521,
    "d": 3652,
    "h": 3652 * 24 - 1,
    "m": (3652 * 24 - 1) * 60,
    "s": (3652 * 24 - 1) * 3600,
}


def _up_to(n: int) -> str:
    """A regex matching the decimal integers 1..n without leading zero."""
    digits = str(n)
    alternatives = [
        f"[1-9][0-9]{{{length - 1}}}" if length > 1 else "[1-9]" for length in range(1, len(digits))
    ]
    for i, d in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(d) - 1 >= low:
            rest = len(digits) - i - 1
            alternatives.append(f"{digits[:i]}[{low}-{int(d) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(digits)
    return "|".join(alternatives)


def openapi_pattern() -> str:
    """The periods always accepted, as one regular expression for the OpenAPI document."""
    return "^(?:" + "|".join(f"(?:{_up_to(n)}){unit}" for unit, n in SAFE_MAX.items()) + ")$"
