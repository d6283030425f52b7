"""Fixed-window rate limits with counters in the cache (Redis in production), and their response headers.

Every per-IP limit keys on tokenmgr.client_ip.client_ip (re-exported here): the real client behind trusted proxies.
Every hit over a limit is counted in /metrics (tokenmgr_ratelimit_exceeded_total, labelled by the limit's scope).
"""

import functools
import re
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from .client_ip import client_ip
from .errors import error_response
from .metrics import count_rate_limited

__all__ = ["Quota", "client_ip", "hit", "hit_many", "hit_exact", "limited", "tightest", "too_many"]

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset: int  # seconds until the window resets

    @property
    def exceeded(self) -> bool:
        return self.remaining < 0

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(self.reset),
        }


def hit(scope: str, ident: str, limit: int, *, now: float | None = None) -> Quota:
    """Count one request of `ident` in `scope`'s current window."""
    return hit_many((scope, ident, limit), now=now)[0]


def hit_many(*counters: tuple[str, str, int], now: float | None = None) -> list[Quota]:
    """Count one request against each (scope, ident, limit): at most one round trip to Redis for all of them."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    keys = [f"rl:{scope}:{ident}:{window}" for scope, ident, _ in counters]
    counts = _local.hit(window, keys, [limit for _, _, limit in counters], caches["default"].make_key)
    reset = max(1, int((window + 1) * WINDOW_SECONDS - now))
    quotas = []
    for (scope, _, limit), count in zip(counters, counts, strict=True):
        quotas.append(Quota(limit=limit, remaining=limit - count, reset=reset))
        if count > limit:
            count_rate_limited(scope)
    return quotas


class _LocalCounts:
    """Pre-counting in this process, so that a busy counter costs a Redis round trip only now and then.

    After each sync a counter gets an allowance: hits this process may count locally before it must add them to the
    shared counter. The allowance is 1/SPREAD of what the shared counter had left at the sync, capped by
    settings.RATELIMIT_LOCAL_BATCH (0 = every hit syncs), so it shrinks to nothing near the limit: a 429 is only ever
    decided on the shared count (never a refusal too early), and beyond the limit each other process can admit at
    most its outstanding allowance (at most RATELIMIT_LOCAL_BATCH, and limit/SPREAD) before it syncs and refuses too.
    With a single process the counts are exact.
    """

    SPREAD = 16
    MAX_KEYS = 100_000  # per window; beyond, new counters sync on every hit

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: int | None = None
        # counter name -> [shared count at its last sync, hits counted here since, allowance left]
        self._state: dict[str, list[int]] = {}

    def hit(self, window: int, keys: list[str], limits: list[int], make_key) -> list[int]:
        """The count of each key after this hit; `make_key` names the shared counter (cache prefix included)."""
        batch = settings.RATELIMIT_LOCAL_BATCH
        names = [make_key(key) for key in keys]
        with self._lock:
            if window != self._window:
                self._window, self._state = window, {}
            states = [self._state.get(name) for name in names]
            if all(state is not None and state[2] > 0 for state in states):
                for state in states:
                    state[1] += 1
                    state[2] -= 1
                return [state[0] + state[1] for state in states]
            # This sync carries the hits counted locally so far; until it returns, other threads sync too.
            deltas = []
            for state in states:
                deltas.append(1 + (state[1] if state else 0))
                if state:
                    state[1] = state[2] = 0
        try:
            counts = _increment(keys, deltas)  # outside the lock: the round trip
        except Exception:
            with self._lock:  # keep the local hits for the next sync
                for state, delta in zip(states, deltas, strict=True):
                    if state:
                        state[1] += delta - 1
            raise
        with self._lock:
            if window == self._window:
                for name, count, limit in zip(names, counts, limits, strict=True):
                    allowance = min(batch, max(0, limit - count) // self.SPREAD)
                    state = self._state.get(name)
                    if state is None:
                        if len(self._state) < self.MAX_KEYS:
                            self._state[name] = [count, 0, allowance]
                    elif count >= state[0]:  # not overtaken by a later sync of another thread
                        state[0], state[2] = count, allowance
        return counts


_local = _LocalCounts()


# One command for every counter of a request: SET NX EX then INCRBY each key, return the counts.
INCREMENT_LUA = """
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'EX', ARGV[1], 'NX')
  counts[i] = redis.call('INCRBY', key, ARGV[i + 1])
end
return counts
"""


def _write_server(location: str | list[str]) -> str:
    """The URL Django's RedisCache writes to: the first server of its LOCATION (a list, or split on ";" or ",")."""
    servers = re.split("[;,]", location) if isinstance(location, str) else location
    return servers[0].strip()


@functools.cache
def _redis_script(url: str):
    """The counting script, registered on a redis-py client of `url`: made once per process, not per request."""
    return redis.Redis.from_url(url).register_script(INCREMENT_LUA)


def _increment(keys: list[str], deltas: list[int], ttl: int = WINDOW_SECONDS + 1) -> list[int]:
    """Add each delta to its key, creating it with the window's TTL; on Redis one round trip for all keys."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full = [backend.make_and_validate_key(key) for key in keys]
        script = _redis_script(_write_server(settings.CACHES["default"]["LOCATION"]))
        return script(keys=full, args=[ttl, *deltas])
    counts = []
    for key, delta in zip(keys, deltas, strict=True):
        if cache.add(key, delta, timeout=ttl):
            counts.append(delta)
            continue
        try:
            counts.append(cache.incr(key, delta))
        except ValueError:  # expired between add and incr
            cache.add(key, delta, timeout=ttl)
            counts.append(delta)
    return counts


def hit_exact(scope: str, ident: str, limit: int, *, window: int, now: float | None = None) -> Quota:
    """Count one request of `ident` in `scope`'s current window of `window` seconds, exactly (one round trip).

    For rare events counted over long windows (emails per address per hour): no local pre-counting."""
    now = time.time() if now is None else now
    index = int(now // window)
    (count,) = _increment([f"rl:{scope}:{ident}:{window}:{index}"], [1], ttl=window + 1)
    if count > limit:
        count_rate_limited(scope)
    return Quota(limit=limit, remaining=limit - count, reset=max(1, int((index + 1) * window - now)))


def tightest(*quotas: Quota) -> Quota:
    """The quota to report: an exceeded one first, else the one with the fewest requests left."""
    return min(quotas, key=lambda q: (not q.exceeded, q.remaining))


def too_many(quota: Quota):
    return error_response(
        429,
        detail=f"Limite de {quota.limit} requêtes par minute dépassée : réessayez dans {quota.reset} s.",
        headers={**quota.headers(), "Retry-After": str(quota.reset)},
    )


def limited(scope: str, setting: str):
    """Decorate a view: count the request per client IP against `settings.<setting>` per minute, answer 429 beyond,
    and put the RateLimit-* headers on every response the view returns (errors included)."""
    from functools import wraps

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            quota = hit(scope, client_ip(request), getattr(settings, setting))
            if quota.exceeded:
                return too_many(quota)
            response = view(request, *args, **kwargs)
            for name, value in quota.headers().items():
                response[name] = value
            return response

        return wrapper

    return decorator
