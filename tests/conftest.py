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
