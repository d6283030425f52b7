"""/metrics served by 2 gunicorn workers: whichever worker answers a scrape, the request counters are the totals of
every worker (prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR set by the topology)."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

TOKEN = "e2e-metrics-bearer-0123456789abcdef"
REQUESTS = 60  # per round, 8 at a time: a busy sync worker leaves the next connection to the other one
MAX_ROUNDS = 20
SCRAPES = 10
READYZ = {"route": "readyz", "method": "GET", "status": "2xx"}


def _readyz_count(samples) -> float:
    return sum(s.value for s in samples if s.name == "tokenmgr_http_requests_total" and s.labels == READYZ)


def _scrape(topo: Topology) -> float:
    status, headers, body = topo.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body[:300]
    samples = [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]
    return _readyz_count(samples)


def _settled_scrape(topo: Topology) -> float:
    """The count once it holds still: a readiness probe the topology gave up waiting for (a slow first request on a
    loaded machine) is still counted when its worker finishes it, possibly after a first scrape."""
    last = _scrape(topo)
    for _ in range(30):
        time.sleep(1)
        now = _scrape(topo)
        if now == last:
            return now
        last = now
    return last


def _shares(topo: Topology) -> dict[str, float]:
    """Each worker's own count, from its own file (pid: count)."""
    shares = {}
    for path in topo.metrics_dir.glob("counter_*.db"):
        samples = [s for family in MultiProcessCollector.merge([str(path)]) for s in family.samples]
        shares[path.stem.split("_", 1)[1]] = _readyz_count(samples)
    return shares


def test_request_counter_is_the_total_of_both_workers(report):
    with Topology(extra_env={"METRICS_TOKEN": TOKEN}) as topo:
        assert topo.get("/metrics")[0] == 404
        assert topo.get("/metrics", headers={"Authorization": "Bearer wrong"})[0] == 404

        before = _settled_scrape(topo)
        sent = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(MAX_ROUNDS):  # until both workers have served some (the kernel picks who accepts)
                statuses = list(pool.map(lambda _: topo.get("/readyz")[0], range(REQUESTS)))
                assert statuses == [200] * REQUESTS
                sent += REQUESTS
                if len([share for share in _shares(topo).values() if share > 0]) == 2:
                    break
        scrapes = [_scrape(topo) for _ in range(SCRAPES)]
        shares = _shares(topo)
        report(
            f"{sent} GET /readyz after a scrape reading {before:.0f}: {SCRAPES} scrapes read "
            f"{sorted({int(s) for s in scrapes})}; per worker process (pid: count) {shares}"
        )
        assert scrapes == [before + sent] * SCRAPES
        assert len([share for share in shares.values() if share > 0]) == 2
        assert all(share < before + sent for share in shares.values())
        assert TOKEN not in topo.log("web")
