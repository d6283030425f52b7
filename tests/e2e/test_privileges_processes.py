"""/v2/privileges served by 2 gunicorn workers: the bounds of its per-process shortcuts, from outside.

- a revocation made by another process (manage.py) reaches every worker within TOKEN_CHECK_CACHE_SECONDS;
- the per-token rate limit, pre-counted in each worker, never refuses before the limit and overshoots it by at most
  the allowance the other worker may hold (min(RATELIMIT_LOCAL_BATCH, limit / 16)).
"""

import time

import pytest

from tests.e2e.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CACHE_SECONDS = 2
PER_TOKEN = 200

REVOKE = (
    "from tokens.models import Token; from tokens.services import token_revoke;"
    "token_revoke(token=Token.objects.get(secret_prefix='{prefix}'), by=None, reason='fuite')"
)


def test_revocation_and_rate_limit_across_workers(report):
    env = {"TOKEN_CHECK_CACHE_SECONDS": str(CACHE_SECONDS), "RATELIMIT_PRIVILEGES_PER_TOKEN": str(PER_TOKEN)}
    with Topology(extra_env=env) as topo:
        secret, limited = topo.issue_secret(), topo.issue_secret()

        # Rate limit: one request per connection, spread by the kernel over both workers, all in one window.
        if time.time() % 60 > 45:
            time.sleep(60.5 - time.time() % 60)
        statuses = [topo.get(f"/v2/privileges?token={limited}")[0] for _ in range(PER_TOKEN + 60)]
        admitted = statuses.count(200)
        first_refusal = statuses.index(429) if 429 in statuses else None
        report(
            f"{len(statuses)} requests with a {PER_TOKEN}/min token: {admitted} answered 200, first 429 at #{first_refusal}"
        )
        assert set(statuses) <= {200, 429}
        assert first_refusal is not None and first_refusal >= PER_TOKEN
        assert PER_TOKEN <= admitted <= PER_TOKEN + min(32, PER_TOKEN // 16)

        # Revocation: both workers have the token's check in memory, then another process revokes it.
        assert all(topo.get(f"/v2/privileges?token={secret}")[0] == 200 for _ in range(20))
        topo.manage("shell", "-c", REVOKE.format(prefix=secret[:12]))
        revoked = time.monotonic()
        answers = []
        while time.monotonic() - revoked < CACHE_SECONDS + 1:
            answers.append((time.monotonic() - revoked, topo.get(f"/v2/privileges?token={secret}")[0]))
            time.sleep(0.02)  # well under the token's own rate limit
        late_200 = [round(t, 2) for t, status in answers if status == 200]
        report(
            f"after the revocation by another process: {len(answers)} requests in {CACHE_SECONDS + 1}s, "
            f"200 until {max(late_200, default=0):.2f}s, then 401"
        )
        assert {status for _, status in answers} <= {200, 401}
        assert all(t < CACHE_SECONDS for t in late_200)
        assert answers[-1][1] == 401
