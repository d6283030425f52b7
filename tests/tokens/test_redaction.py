import logging

import pytest

from tokenmgr.logging import RedactSecretsFilter, redact

SECRET = "tkm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd"


@pytest.mark.parametrize(
    ("line", "leak"),
    [
        (f'"GET /v2/privileges?token={SECRET} HTTP/1.1" 200 42', SECRET),
        ('"GET /v2/privileges?token=legacy.jwt.value&x=1 HTTP/1.1" 401 10', "legacy.jwt.value"),
        ('"GET /v2/privileges?a=1&TOKEN=abc123legacy HTTP/1.1" 401 10', "abc123legacy"),
        ("Authorization: Bearer legacy-opaque-value", "legacy-opaque-value"),
        ('"GET /jetons/3f1c/renouveler/?sesame=AAAAAQxyzSIGNATURE HTTP/1.1" 200 9', "AAAAAQxyzSIGNATURE"),
        ('"POST /connexion/lien/?next=/&token=loginlinkvalue HTTP/1.1" 302 0', "loginlinkvalue"),
        (f"something mentions {SECRET} in passing", SECRET),
    ],
)
def test_redact(line, leak):
    cleaned = redact(line)
    assert leak not in cleaned
    assert "[REDACTED]" in cleaned


def test_filter_rewrites_formatted_records(caplog):
    logger = logging.getLogger("django.server")
    record = logger.makeRecord(
        "django.server",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        (f"GET /v2/privileges?token={SECRET} HTTP/1.1", 200, 42),
        None,
    )
    assert RedactSecretsFilter().filter(record)
    assert SECRET not in record.getMessage()
    assert "/v2/privileges?token=[REDACTED]" in record.getMessage()


def test_runserver_request_log_is_redacted(client, db, caplog):
    """The real logging configuration, through django.server's handler, as runserver uses it."""
    from django.core.servers.basehttp import WSGIRequestHandler

    handler = WSGIRequestHandler.__new__(WSGIRequestHandler)
    handler.requestline = f"GET /v2/privileges?token={SECRET} HTTP/1.1"
    handler.request_version = "HTTP/1.1"
    handler.client_address = ("127.0.0.1", 5000)
    handler.request = None
    handler.command = "GET"
    handler.path = f"/v2/privileges?token={SECRET}"
    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    capture = Capture()
    capture.addFilter(RedactSecretsFilter())
    logging.getLogger("django.server").addHandler(capture)
    try:
        handler.log_message('"%s" %s %s', handler.requestline, "200", "42")
    finally:
        logging.getLogger("django.server").removeHandler(capture)
    assert records and all(SECRET not in r for r in records)


def test_configured_handlers_carry_the_filter():
    from django.conf import settings

    assert "redact_secrets" in settings.LOGGING["handlers"]["console"]["filters"]
    for name in ("django.server", "django.request", "gunicorn.access", "gunicorn.error"):
        assert settings.LOGGING["loggers"][name]["handlers"] == ["console"]


def test_gunicorn_logger_redacts_access_log():
    from types import SimpleNamespace

    from gunicorn.config import Config

    from tokenmgr.logging import GunicornLogger

    cfg = Config()
    cfg.set("accesslog", "-")
    logger = GunicornLogger(cfg)
    lines = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    capture = Capture()
    for f in logger.access_log.filters:
        capture.addFilter(f)
    logger.access_log.addHandler(capture)
    resp = SimpleNamespace(status="200 OK", response_length=10, headers=[], sent=10)
    req = SimpleNamespace(
        headers=[], method="GET", path="/v2/privileges", query=f"token={SECRET}", uri="/", version=(1, 1)
    )
    environ = {
        "RAW_URI": f"/v2/privileges?token={SECRET}",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/v2/privileges",
        "QUERY_STRING": f"token={SECRET}",
    }
    import datetime

    logger.access(resp, req, environ, datetime.timedelta(seconds=0.01))
    assert lines, "gunicorn wrote no access line"
    assert all(SECRET not in line for line in lines)
    assert any("[REDACTED]" in line for line in lines)
