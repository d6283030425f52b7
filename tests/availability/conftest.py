import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

PARIS = ZoneInfo("Europe/Paris")
EP = "api/v3/entreprises_restored"
STATS = "/api/watchdoge/stats/provider_availabilities"


def paris(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)


def line(timestamp, status=200, endpoint=EP) -> str:
    stamp = timestamp.isoformat() if isinstance(timestamp, dt.datetime) else timestamp
    return json.dumps({"timestamp": stamp, "endpoint": endpoint, "status": status})


@pytest.fixture
def ingest(db):
    from availability.services import calls_ingest

    def run(*records, **kwargs):
        lines = [r if isinstance(r, str) else line(*r) for r in records]
        return calls_ingest(lines=lines, **kwargs)

    return run


@pytest.fixture
def stats(client):
    def get(period=None, endpoint=EP, **headers):
        params = {"endpoint": endpoint} if endpoint is not None else {}
        if period is not None:
            params["period"] = period
        return client.get(STATS, params, headers=headers)

    return get
