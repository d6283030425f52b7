"""/metrics served by 2 gunicorn workers: whichever worker answers a scrape, the request counters are the totals of
every worker (prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR set by the topology)."""

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

TOKEN = "e2e-metrics-bearer-0123456789abcdef"
REQUESTS = 60
SCRAPES = 10
READYZ = {"route": "readyz", "method": "GET", "status": "2xx"}


def _readyz_count(samples) -> float:
    return sum(s.value for s in samples if s.name == "tokenmgr_http_requests_total" and s.labels == READYZ)


def _scrape(topo: Topology) -> float:
    status, headers, body = topo.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body[:300]
    samples = [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]
    return _readyz_count(samples)


def test_request_counter_is_the_total_of_both_workers(report):
    with Topology(extra_env={"METRICS_TOKEN": TOKEN}) as topo:
        assert topo.get("/metrics")[0] == 404
        assert topo.get("/metrics", headers={"Authorization": "Bearer wrong"})[0] == 404

        before = _scrape(topo)
        for _ in range(REQUESTS):  # one connection each: the kernel hands them to either worker
            assert topo.get("/readyz")[0] == 200
        scrapes = [_scrape(topo) for _ in range(SCRAPES)]

        # Each worker's own share, from its file: both served some, neither all.
        shares = {}
        for path in topo.metrics_dir.glob("counter_*.db"):
            samples = [s for family in MultiProcessCollector.merge([str(path)]) for s in family.samples]
            shares[path.stem.split("_", 1)[1]] = _readyz_count(samples)
        report(
            f"{REQUESTS} GET /readyz after a scrape reading {before:.0f}: {SCRAPES} scrapes read "
            f"{sorted({int(s) for s in scrapes})}; per worker process (pid: count) {shares}"
        )
        assert scrapes == [before + REQUESTS] * SCRAPES
        assert len([share for share in shares.values() if share > 0]) == 2
        assert all(share < before + REQUESTS for share in shares.values())
        assert TOKEN not in topo.log("web")
