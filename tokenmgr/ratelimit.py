"""Fixed-window rate limits with counters in the cache (Redis in production), and their response headers."""

import time
from dataclasses import dataclass

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from .errors import error_response

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
    """Count one request against each (scope, ident, limit): one round trip to Redis for all of them."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    keys = [f"rl:{scope}:{ident}:{window}" for scope, ident, _ in counters]
    counts = _increment(keys)
    reset = max(1, int((window + 1) * WINDOW_SECONDS - now))
    return [
        Quota(limit=limit, remaining=limit - count, reset=reset)
        for (_, _, limit), count in zip(counters, counts, strict=True)
    ]


# One command for every counter of a request: SET NX EX then INCR each key, return the counts.
INCREMENT_LUA = """
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'EX', ARGV[1], 'NX')
  counts[i] = redis.call('INCR', key)
end
return counts
"""


def _redis_script(backend: RedisCache):
    """The registered script on the backend's write client, made once per cache backend (not once per request)."""
    script = backend.__dict__.get("_ratelimit_script")
    if script is None:
        client = backend._cache.get_client(None, write=True)
        script = backend.__dict__["_ratelimit_script"] = client.register_script(INCREMENT_LUA)
    return script


def _increment(keys: list[str]) -> list[int]:
    """INCR each key, creating it with the window's TTL; on Redis one round trip for all keys."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full = [backend.make_and_validate_key(key) for key in keys]
        return _redis_script(backend)(keys=full, args=[WINDOW_SECONDS + 1])
    counts = []
    for key in keys:
        if cache.add(key, 1, timeout=WINDOW_SECONDS + 1):
            counts.append(1)
            continue
        try:
            counts.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=WINDOW_SECONDS + 1)
            counts.append(1)
    return counts


def tightest(*quotas: Quota) -> Quota:
    """The quota to report: an exceeded one first, else the one with the fewest requests left."""
    return min(quotas, key=lambda q: (not q.exceeded, q.remaining))


def too_many(quota: Quota):
    return error_response(
        429,
        detail=f"Limite de {quota.limit} requêtes par minute dépassée : réessayez dans {quota.reset} s.",
        headers={**quota.headers(), "Retry-After": str(quota.reset)},
    )


def client_ip(request) -> str:
    """The peer address. Behind a proxy, set it from X-Forwarded-For in the proxy, not here (spoofable)."""
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def limited(scope: str, setting: str):
    """Decorate a view: count the request per client IP against `settings.<setting>` per minute, answer 429 beyond,
    and put the RateLimit-* headers on every response the view returns (errors included)."""
    from functools import wraps

    from django.conf import settings

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
