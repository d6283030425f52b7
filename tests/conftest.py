import uuid

import pytest
from django.conf import settings as django_settings


@pytest.fixture(autouse=True)
def _isolated_cache(settings):
    """Each test gets its own cache namespace (Redis under `make test`), so counters never leak between tests."""
    caches = {k: dict(v) for k, v in django_settings.CACHES.items()}
    for conf in caches.values():
        conf["KEY_PREFIX"] = f"t{uuid.uuid4().hex[:12]}"
    settings.CACHES = caches


@pytest.fixture
def issued(db):
    from tests.factories import issue_token

    return issue_token()


def pytest_terminal_summary(terminalreporter):
    """Print the `report` lines of the fault and e2e tests (works under xdist: user_properties travel back)."""
    seen = set()
    for reports in terminalreporter.stats.values():
        for rep in reports:
            props = dict(getattr(rep, "user_properties", []) or [])
            if (
                "report" in props
                and rep.nodeid not in seen
                and getattr(rep, "when", "") in ("teardown", "call")
            ):
                seen.add(rep.nodeid)
                terminalreporter.write_sep("-", f"report: {rep.nodeid}")
                terminalreporter.write_line(props["report"])
