"""Rate-limit counters: exact in one process, pre-counted locally between round trips (tokenmgr/ratelimit.py)."""

import pytest

from tokenmgr import ratelimit

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
