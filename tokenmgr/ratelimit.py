"""Fixed-window rate limits with counters in the cache (Redis in production), and their response headers."""

import time
from dataclasses import dataclass

from django.core.cache import cache

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
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = f"rl:{scope}:{ident}:{window}"
    if cache.add(key, 1, timeout=WINDOW_SECONDS + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=WINDOW_SECONDS + 1)
            count = 1
    reset = max(1, int((window + 1) * WINDOW_SECONDS - now))
    return Quota(limit=limit, remaining=limit - count, reset=reset)


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
