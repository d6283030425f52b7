"""PostgreSQL restarted while gunicorn serves /v2/privileges: JSON 503 during the outage, then it resumes alone."""

import json
import time

import pytest

from tests.e2e.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ISSUE = (
    "from tokens.services import client_get_or_create, token_issue; from tokens.models import Privilege;"
    "c = client_get_or_create(siret='13002526500013', name='DINUM');"
    "print(token_issue(client=c, privileges=list(Privilege.objects.filter(code='entreprises'))).secret)"
)


def test_postgresql_restart_while_serving_privileges(report):
    with Topology() as topo:
        secret = topo.manage("shell", "-c", ISSUE).stdout.strip().splitlines()[-1]
        path = f"/v2/privileges?token={secret}"
        status, body = topo.get_json(path)
        assert (status, body) == (200, {"privileges": ["entreprises"]})
        report("token issued; /v2/privileges answers 200 through gunicorn")

        topo.services.pg_stop(mode="fast")
        report("PostgreSQL stopped")
        outage = [topo.get(path) for _ in range(20)]
        statuses = sorted({s for s, _, _ in outage})
        report(f"during the outage: {len(outage)} requests, statuses {statuses}")
        for status, headers, raw in outage:
            assert status == 503, (status, raw[:300])
            assert headers["Content-Type"].startswith("application/json")
            assert json.loads(raw)["errors"][0]["code"] == "service_unavailable"

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
