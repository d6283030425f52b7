import json
import logging
from types import SimpleNamespace

from tokenmgr.logging import JsonFormatter
from tokenmgr.request_id import _adopt, _propagate, _release, current_request_id


def test_response_carries_a_request_id(client, db):
    response = client.get("/v2/privileges")
    assert len(response["X-Request-ID"]) == 32


def test_well_formed_incoming_id_is_kept_and_junk_replaced(client, db):
    assert (
        client.get("/v2/privileges", headers={"X-Request-ID": "proxy-abc-12345"})["X-Request-ID"]
        == "proxy-abc-12345"
    )
    replaced = client.get("/v2/privileges", headers={"X-Request-ID": "bad id\nwith newline"})["X-Request-ID"]
    assert replaced != "bad id\nwith newline" and len(replaced) == 32


def test_request_id_travels_into_celery_tasks():
    token = current_request_id.set("req-1234567890")
    try:
        headers = {}
        _propagate(headers=headers)
        assert headers["request_id"] == "req-1234567890"
    finally:
        current_request_id.reset(token)
    task = SimpleNamespace(request=SimpleNamespace(request_id="req-1234567890"))
    _adopt(task=task)
    assert current_request_id.get() == "req-1234567890"
    _release(task=task)
    assert current_request_id.get() == "-"


def test_json_log_lines_carry_request_id_and_no_secret():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET /v2/privileges?token=%s", ("tkm_secretsecretsecret",), None
    )
    record.request_id = "req-1"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["request_id"] == "req-1" and entry["level"] == "INFO" and entry["logger"] == "x"
    # The redaction filter runs before the formatter in the configured handler.
    from tokenmgr.logging import RedactSecretsFilter

    RedactSecretsFilter().filter(record)
    assert "tkm_secret" not in JsonFormatter().format(record)


def test_django_request_log_lines_of_4xx_carry_the_request_id(client, db, caplog):
    import logging

    from tokenmgr.request_id import RequestIdFilter

    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Capture()
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        response = client.get("/v2/privileges")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 401
    assert records and all(r.request_id == response["X-Request-ID"] for r in records)
    assert current_request_id.get() == "-"  # cleared once the response was closed
