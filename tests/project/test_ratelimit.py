"""Rate-limit counters: exact in one process, pre-counted locally between round trips (tokenmgr/ratelimit.py), keyed
on the real client IP."""

import datetime as dt

import pytest
import time_machine

from tokenmgr import ratelimit
from tokenmgr.client_ip import parse_trusted_proxies

NOW = 1_800_000_010.0  # 10 s into a window


@pytest.fixture
def round_trips(monkeypatch):
    """Count the round trips to the shared counters."""
    calls = []
    real = ratelimit._increment

    def counting(keys, deltas):
        calls.append(list(deltas))
        return real(keys, deltas)

    monkeypatch.setattr(ratelimit, "_increment", counting)
    return calls


def _hits(counts: ratelimit._LocalCounts, key: str, limit: int, n: int) -> list[int]:
    from django.core.cache import caches

    window = int(NOW // ratelimit.WINDOW_SECONDS)
    return [counts.hit(window, [key], [limit], caches["default"].make_key)[0] for _ in range(n)]


def test_one_process_counts_exactly_with_few_round_trips(settings, round_trips):
    settings.RATELIMIT_LOCAL_BATCH = 32
    counts = [ratelimit.hit("bench", "1.2.3.4", 10**6, now=NOW).remaining for _ in range(1000)]
    assert counts == [10**6 - n for n in range(1, 1001)]
    assert len(round_trips) <= 1000 // 32 + 2
    assert sum(map(sum, round_trips)) <= 1000  # every hit but the last few reached the shared counter


def test_near_the_limit_every_hit_goes_to_the_shared_counter(settings, round_trips):
    settings.RATELIMIT_LOCAL_BATCH = 32
    quotas = [ratelimit.hit("api", "1.2.3.4", 250, now=NOW) for _ in range(260)]
    assert [q.exceeded for q in quotas] == [False] * 250 + [True] * 10
    assert [q.remaining for q in quotas[:250]] == list(range(249, -1, -1))
    assert all(
        delta == [1] for delta in round_trips[-25:]
    )  # the last hits before and beyond the limit: one each


def test_batch_zero_is_exact_every_time(settings, round_trips):
    settings.RATELIMIT_LOCAL_BATCH = 0
    for _ in range(50):
        ratelimit.hit("api", "1.2.3.4", 10**6, now=NOW)
    assert round_trips == [[1]] * 50


def test_two_processes_never_refuse_early_and_overshoot_within_the_bound(settings):
    """Two processes sharing the counter: refusals only from the shared count; admitted beyond the limit at most
    the other process's outstanding allowance (≤ RATELIMIT_LOCAL_BATCH and ≤ limit / SPREAD)."""
    settings.RATELIMIT_LOCAL_BATCH = 32
    limit = 250
    a, b = ratelimit._LocalCounts(), ratelimit._LocalCounts()
    admitted = refused_early = 0
    pattern = [a] * 7 + [b] * 3  # uneven load balancing
    for i in range(400):
        proc = pattern[i % len(pattern)]
        count = _hits(proc, "rl:api:tok", limit, 1)[0]
        if count <= limit:
            admitted += 1
        elif admitted < limit:
            refused_early += 1
    assert refused_early == 0
    assert limit <= admitted <= limit + min(32, limit // ratelimit._LocalCounts.SPREAD)


def test_idle_process_holding_an_allowance_overshoots_at_most_that_allowance(settings):
    settings.RATELIMIT_LOCAL_BATCH = 32
    limit = 1000
    a, b = ratelimit._LocalCounts(), ratelimit._LocalCounts()
    _hits(a, "rl:api:ip", limit, 1)  # a syncs early: allowance min(32, 999 // 16) = 32
    b_counts = _hits(b, "rl:api:ip", limit, 1100)
    assert sum(c <= limit for c in b_counts) == limit - 1  # b stops exactly at the shared limit
    a_counts = _hits(a, "rl:api:ip", limit, 100)
    assert sum(c <= limit for c in a_counts) == 32  # then a spends its allowance, and no more


def test_a_failed_round_trip_keeps_the_local_hits(settings, monkeypatch):
    settings.RATELIMIT_LOCAL_BATCH = 32
    counts = ratelimit._LocalCounts()
    _hits(counts, "rl:api:x", 10**6, 33)  # 1 sync, then 32 local hits
    real = ratelimit._increment

    def down(keys, deltas):
        raise ConnectionError("redis down")

    monkeypatch.setattr(ratelimit, "_increment", down)
    with pytest.raises(ConnectionError):
        _hits(counts, "rl:api:x", 10**6, 1)
    monkeypatch.setattr(ratelimit, "_increment", real)
    # 1 synced + 32 counted locally + this one (the failed hit was not counted).
    assert _hits(counts, "rl:api:x", 10**6, 1) == [34]


# ---------------------------------------------------------------------------------------------------------------
# Per-IP limits key on the real client IP (tokenmgr/client_ip.py)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def privileges(client, settings, db):
    settings.RATELIMIT_PRIVILEGES_PER_IP = 2
    settings.RATELIMIT_LOCAL_BATCH = 0

    def get(remote_addr: str, xff: str | None = None) -> int:
        extra = {"REMOTE_ADDR": remote_addr}
        if xff is not None:
            extra["HTTP_X_FORWARDED_FOR"] = xff
        return client.get("/v2/privileges", **extra).status_code

    return get


@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_a_spoofed_forwarded_for_changes_nothing_without_trusted_proxies(privileges):
    codes = [privileges("198.51.100.7", xff=f"203.0.113.{i}") for i in range(4)]
    assert codes == [401, 401, 429, 429]


@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_clients_behind_a_trusted_proxy_have_their_own_limits(privileges, settings):
    settings.TRUSTED_PROXIES = parse_trusted_proxies("10.0.0.0/8")
    alice, bob = "203.0.113.1", "203.0.113.2"
    assert [privileges("10.0.0.5", xff=alice) for _ in range(3)] == [401, 401, 429]
    # Bob, through another proxy of the range, is not limited by Alice's requests.
    assert privileges("10.0.0.6", xff=bob) == 401
    # Alice cannot escape her limit by writing a left-most entry: the proxy appends her real address after it.
    assert privileges("10.0.0.5", xff=f"192.0.2.99, {alice}") == 429
    assert privileges("10.0.0.5", xff=f"{bob}, {alice}") == 429
    # Nor can a peer that is not a trusted proxy speak for someone else.
    assert privileges("198.51.100.7", xff=bob) == 401
    assert privileges("198.51.100.7", xff=bob) == 401
    assert privileges("198.51.100.7", xff=bob) == 429
    assert privileges("10.0.0.6", xff=bob) == 401  # Bob's own count: his second request


@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_decorated_limits_key_on_the_client_ip_too(client, settings, db):
    settings.TRUSTED_PROXIES = parse_trusted_proxies("10.0.0.0/8")
    settings.RATELIMIT_STATUS_PER_IP = 1
    settings.RATELIMIT_LOCAL_BATCH = 0
    url = "/api/watchdoge/dashboard/current_status"
    first = client.get(url, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.1")
    assert first.status_code != 429 and first["RateLimit-Limit"] == "1"
    assert client.get(url, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 429
    assert client.get(url, REMOTE_ADDR="10.0.0.6", HTTP_X_FORWARDED_FOR="203.0.113.2").status_code != 429


def test_exact_counters_over_long_windows():
    quotas = [ratelimit.hit_exact("mail", "x", 3, window=3600, now=NOW) for _ in range(4)]
    assert [q.remaining for q in quotas] == [2, 1, 0, -1] and quotas[-1].exceeded
    assert 0 < quotas[0].reset <= 3600
    assert not ratelimit.hit_exact("mail", "x", 3, window=3600, now=NOW + 3600).exceeded  # next window
    assert not ratelimit.hit_exact("mail", "y", 3, window=3600, now=NOW).exceeded  # another ident


# ---------------------------------------------------------------------------------------------------------------
# Redis: one round trip per request through a redis-py client of the cache's own server
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("location", "server"),
    [
        ("redis://a:6379/0", "redis://a:6379/0"),
        ("redis://a:6379/1;redis://b:6379/1", "redis://a:6379/1"),
        ("redis://a/2,redis://b/2", "redis://a/2"),
        (["redis://a/3", "redis://b/3"], "redis://a/3"),
    ],
)
def test_counts_are_written_to_the_caches_write_server(location, server):
    assert ratelimit._write_server(location) == server


def test_counts_on_redis_are_shared_with_the_cache(settings):
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    if not isinstance(caches["default"], RedisCache):
        pytest.skip("the suite runs on Redis under scripts/with_services.py")
    assert ratelimit._increment(["rl:test:redis"], [3]) == [3]
    assert ratelimit._increment(["rl:test:redis"], [2]) == [5]
    assert caches["default"].get("rl:test:redis") == 5  # the same key, read through Django's own client
