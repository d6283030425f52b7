"""PostgreSQL restarted while gunicorn serves /v2/privileges: JSON 503 during the outage, then it resumes alone.

Each gunicorn worker may answer a token it checked less than TOKEN_CHECK_CACHE_SECONDS ago from its own memory,
outage or not: that is shown too, then the outage outlives that delay and every answer is a JSON 503.
"""

import json
import time

import pytest

from tests.e2e.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CACHE_SECONDS = 2


def _assert_json_503(answers):
    for status, headers, raw in answers:
        assert status == 503, (status, raw[:300])
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(raw)["errors"][0]["code"] == "service_unavailable"


def test_postgresql_restart_while_serving_privileges(report):
    with Topology(extra_env={"TOKEN_CHECK_CACHE_SECONDS": str(CACHE_SECONDS)}) as topo:
        secret = topo.issue_secret()
        path = f"/v2/privileges?token={secret}"
        status, body = topo.get_json(path)
        assert (status, body) == (200, {"privileges": ["entreprises"]})
        report("token issued; /v2/privileges answers 200 through gunicorn")

        topo.services.pg_stop(mode="fast")
        stopped = time.monotonic()
        report("PostgreSQL stopped")
        unknown = [topo.get("/v2/privileges?token=tkm_never_seen") for _ in range(10)]
        report(f"during the outage, an unknown token: statuses {sorted({s for s, _, _ in unknown})}")
        _assert_json_503(unknown)
        early = [topo.get(path) for _ in range(10)]
        early_statuses = sorted({s for s, _, _ in early})
        report(f"within {CACHE_SECONDS}s of its last check, the known token: statuses {early_statuses}")
        assert time.monotonic() - stopped < CACHE_SECONDS or 200 not in early_statuses
        _assert_json_503([answer for answer in early if answer[0] != 200])
        time.sleep(max(0.0, stopped + CACHE_SECONDS - time.monotonic()) + 0.1)
        outage = [topo.get(path) for _ in range(20)]
        report(
            f"after {CACHE_SECONDS}s of outage: {len(outage)} requests, statuses {sorted({s for s, _, _ in outage})}"
        )
        _assert_json_503(outage)

        topo.services.pg_start()
        report("PostgreSQL started again")
        started = time.monotonic()
        recovered = topo.wait_until(
            lambda: topo.get(path)[0] == 200, timeout=30, interval=0.2, what="recovery"
        )
        report(f"service resumed without restarting gunicorn after {time.monotonic() - started:.1f}s")
        assert recovered
        # Every worker recovers, not just one: a burst of requests all succeed.
        burst = [topo.get(path)[0] for _ in range(20)]
        report(f"burst after recovery: {burst.count(200)}/20 answered 200")
        assert burst == [200] * 20
        assert "Traceback" not in topo.log("web") or "OperationalError" in topo.log("web")
