import importlib
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

_TRANSACTIONAL_FIXTURES = {"transactional_db", "live_server", "django_db_reset_sequences"}


def pytest_configure(config):
    # WhiteNoise serves STATIC_ROOT as well and warns when it is missing (a deployment's collectstatic makes it).
    Path(django_settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


def _uses_database(request) -> bool:
    return request.node.get_closest_marker("django_db") is not None or bool(
        {"db", *_TRANSACTIONAL_FIXTURES} & set(request.fixturenames)
    )


@pytest.fixture(autouse=True)
def _seeded_catalogue(request, django_db_blocker):
    """The privilege/endpoint catalogue is seeded by a data migration; a transactional test's flush empties it.

    Before each database test, re-seed it when it is missing (a cheap check; the seed is idempotent), outside any
    test transaction, so a flush in one test never leaks into the next. No serialized_rollback needed.
    """
    if _uses_database(request):
        from tokens.models import Privilege

        request.getfixturevalue("django_db_setup")  # the test database, never the configured one

        with django_db_blocker.unblock():
            if not Privilege.objects.exists():
                seed = importlib.import_module("tokens.migrations.0002_seed_catalogue").seed
                from django.apps import apps

                seed(apps, None)
    yield


@pytest.fixture(autouse=True)
def _isolated_cache(settings):
    """Each test gets its own cache namespace (Redis under `make test`), so counters never leak between tests.

    Never call cache.clear() in a test: under xdist it flushes the Redis database shared with the other worker.
    """
    caches = {k: dict(v) for k, v in django_settings.CACHES.items()}
    for conf in caches.values():
        conf["KEY_PREFIX"] = f"t{uuid.uuid4().hex[:12]}"
    settings.CACHES = caches


@pytest.fixture(autouse=True)
def _staff_2fa_off(settings):
    """The suite runs with DEBUG off, where STAFF_2FA defaults to `required`: tests of admin screens log in with a
    password only. Tests of the second factor set `settings.STAFF_2FA = "required"` themselves."""
    settings.STAFF_2FA = "off"


@pytest.fixture(autouse=True)
def _fresh_token_check_cache():
    """The process-local cache of token checks (tokens/selectors.py) starts empty in every test."""
    from tokens.selectors import check_cache

    check_cache.clear()


@pytest.fixture
def recent_auth():
    """Stamp a test client's session as strongly authenticated just now (tokenmgr.reauth), as entering the password
    on /reauth/ does; for sessions opened otherwise than by a password (a reminder's link, `force_login` with the
    sesame backend) that go on to a sensitive action."""
    from tokenmgr import reauth

    def stamp(http_client):
        session = http_client.session
        session[reauth.SESSION_KEY] = int(time.time())
        session.save()
        return http_client

    return stamp


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


@pytest.fixture
def celery_eager():
    """Tasks enqueued during the test run at once in this process, as a worker would run them (errors raised).
    Tasks are enqueued on commit: wrap the request in django_capture_on_commit_callbacks(execute=True), or use a
    transactional test."""
    from tokenmgr.celery import app

    saved = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def account_emails_now(celery_eager, monkeypatch):
    """Account emails (login link, password reset, sign-up) are sent by a Celery task enqueued on commit; in a test
    that never commits, run on-commit work at once and the task in this process, as a worker would."""
    from django.db import transaction

    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: func())
