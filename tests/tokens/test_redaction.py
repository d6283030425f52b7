import contextlib
import datetime as dt
import http.client
import io
import logging
import runpy
import secrets
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, quote_plus

import pytest
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.management import call_command
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tokenmgr.logging import SECRET_PARAMETERS, SECRET_ROUTES, JsonFormatter, RedactSecretsFilter, redact

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


# ---------------------------------------------------------------- every secret-carrying URL, every log stream
ROOT = Path(__file__).resolve().parents[2]
# A legacy secret of an unusual shape: no prefix, URL-reserved characters.
LEGACY = "Legacy.Secret/of+any=shape~" + secrets.token_hex(6)


def _value() -> str:
    return secrets.token_urlsafe(18)


@pytest.fixture
def secret_urls(tmp_path):
    """Every secret-carrying URL of the application (real secrets where the route checks them), and the secrets."""
    from portal.services import calendar_feed_regenerate
    from tests.factories import UserFactory
    from tests.tokens.test_import_tokens import HEADER, row

    user = UserFactory()
    calendar_key = calendar_feed_regenerate(user=user)
    reset_token = default_token_generator.make_token(user)
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    # The legacy secret arrives through import_tokens, as in production.
    csv_path = tmp_path / "legacy.csv"
    csv_path.write_text(f"{HEADER}\n{row(issued_at='2026-06-01', secret=LEGACY)}\n", encoding="utf-8")
    call_command("import_tokens", str(csv_path), stdout=io.StringIO(), stderr=io.StringIO())
    values = {name: _value() for name in ("signed", "sesame", "login", "sesame_next", "calendar2", "api")}
    api_secret = settings.TOKEN_SECRET_PREFIX + values["api"]
    urls = [
        (f"/calendrier/{calendar_key}.ics", {}),
        (f"/calendri%65r/{values['calendar2']}.ics", {}),  # percent-encoded route
        (f"/connexion/mot-de-passe/{uidb64}/{reset_token}/", {}),
        (f"/inscription/confirmer/{values['signed']}/", {}),
        (f"/jetons/{uuid.uuid4()}/renouveler/?sesame={values['sesame']}", {}),
        (f"/connexion/lien/?next=/&token={values['login']}", {}),
        (
            f"/connexion/lien/?next={quote('/jetons/x/renouveler/?sesame=' + values['sesame_next'], safe='')}",
            {},
        ),
        (f"/v2/privileges?token={quote(LEGACY, safe='')}", {}),
        (f"/v2/privileges?%54OKEN={api_secret}", {}),
        ("/api/watchdoge/calls", {"Authorization": f"Bearer {LEGACY}"}),
        ("/portail-inconnu/", {"Referer": f"http://127.0.0.1/calendrier/{calendar_key}.ics"}),
    ]
    leaks = {calendar_key, reset_token, LEGACY, api_secret, *values.values()}
    # The secrets as they may appear in a line: raw, or URL-encoded.
    forms = {form for s in leaks for form in (s, quote(s, safe=""), quote_plus(s))}
    return urls, forms


@contextlib.contextmanager
def console_output(formatter: logging.Formatter):
    """The configured console handler (filters included), writing to a buffer with `formatter`."""
    handlers = [h for h in logging.getLogger().handlers if h.name == "console"]
    assert handlers, "the LOGGING console handler is not installed"
    console = handlers[0]
    buffer, previous = io.StringIO(), console.formatter
    old_stream = console.setStream(buffer)
    console.setFormatter(formatter)
    try:
        yield buffer
    finally:
        console.setStream(old_stream)
        console.setFormatter(previous)


@contextlib.contextmanager
def runserver():
    """Django's development server (runserver's handler and its django.server log) in a thread."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer

    httpd = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler, ipv6=False)
    httpd.set_app(WSGIHandler())  # not get_wsgi_application(): it would configure logging again
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


FORMATTERS = {
    "plain": lambda: logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"]),
    "json": JsonFormatter,
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("log_format", sorted(FORMATTERS))
def test_no_secret_reaches_any_log_stream(secret_urls, client, log_format):
    urls, forms = secret_urls
    with console_output(FORMATTERS[log_format]()) as output:
        # runserver: real requests, logged by django.server (and django.request for 4xx/5xx).
        with runserver() as port:
            for url, headers in urls:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", url, headers=headers)
                connection.getresponse().read()
                connection.close()
        # The test client (django.request and the application's own loggers).
        for url, headers in urls:
            client.get(url, headers=headers)
            client.post(url, headers=headers)
        # Celery task logs, a traceback, and stray mentions.
        from celery.utils.log import get_task_logger

        task_logger = get_task_logger("notifications.tasks")
        for url, headers in urls:
            task_logger.warning("delivering %s with %s", f"{settings.SITE_URL}{url}", headers)
            try:
                raise ValueError(f"could not open {url} ({headers})")
            except ValueError:
                logging.getLogger("tokenmgr").exception("failed")
    text = output.getvalue()
    assert text.count("\n") > 3 * len(urls), text
    assert "django.server" in text or '"GET /' in text  # runserver's lines are there
    assert text.count("[REDACTED]") >= len(urls)
    leaked = sorted(form for form in forms if form in text)
    assert not leaked, f"secrets in the logs: {leaked}\n{text}"


@pytest.mark.django_db
def test_gunicorn_access_log_from_its_config_file_is_redacted(secret_urls):
    """gunicorn.conf.py as gunicorn loads it: its logger class and access format (referer included)."""
    from gunicorn.config import Config

    urls, forms = secret_urls
    cfg = Config()
    for key, value in runpy.run_path(str(ROOT / "gunicorn.conf.py")).items():
        if key in cfg.settings:
            cfg.set(key, value)
    # And a format that also writes a request header and the query.
    saved = {
        name: (log.handlers[:], log.filters[:], log.propagate, log.level)
        for name in ("gunicorn.access", "gunicorn.error")
        if (log := logging.getLogger(name))
    }
    try:
        buffer = io.StringIO()
        for access_format in (cfg.access_log_format, '"%(r)s" %(q)s %({authorization}i)s %(f)s'):
            cfg.set("access_log_format", access_format)
            glogger = cfg.logger_class(cfg)
            streams = [
                h
                for h in glogger.access_log.handlers + glogger.error_log.handlers
                if isinstance(h, logging.StreamHandler) and not type(h).__module__.startswith("_pytest")
            ]
            assert streams
            for handler in streams:
                handler.setStream(buffer)
            for url, headers in urls:
                path, _, query = url.partition("?")
                environ = {
                    "REQUEST_METHOD": "GET",
                    "RAW_URI": url,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "SERVER_PROTOCOL": "HTTP/1.1",
                    "REMOTE_ADDR": "127.0.0.1",
                    "HTTP_REFERER": f"{settings.SITE_URL}{url}",
                    **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
                }
                req = SimpleNamespace(headers=[(k.upper(), v) for k, v in headers.items()])
                resp = SimpleNamespace(status="200 OK", headers=[], sent=10)
                glogger.access(resp, req, environ, dt.timedelta(milliseconds=3))
                glogger.error("Invalid request from %s: %s", "127.0.0.1", url)
    finally:
        for name, (handlers, filters, propagate, level) in saved.items():
            log = logging.getLogger(name)
            log.handlers, log.filters, log.propagate = handlers, filters, propagate
            log.setLevel(level)
    text = buffer.getvalue()
    assert text.count("\n") >= 4 * len(urls)
    leaked = sorted(form for form in forms if form in text)
    assert not leaked, f"secrets in gunicorn's logs: {leaked}\n{text}"


def test_celery_worker_logs_through_the_redacting_configuration(monkeypatch):
    """A worker does not replace the configured handlers with its own: LOGGING (and its filter) stays in force."""
    import logging.config

    from tokenmgr.celery import app

    configured = []
    monkeypatch.setattr(logging.config, "dictConfig", configured.append)
    root = logging.getLogger()
    before = root.handlers[:]
    monkeypatch.setattr(app.log, "already_setup", False)
    app.log.setup_logging_subsystem(loglevel="INFO")
    assert configured == [settings.LOGGING]
    assert root.handlers == before


def test_the_table_covers_the_routes_of_the_url_configuration():
    """Each secret route of the table matches its real URL, and only its secret part is removed."""
    from django.urls import reverse

    examples = {
        reverse("portal_calendar_feed", kwargs={"key": "KEY-1"}): "KEY-1",
        reverse("password_reset_confirm", kwargs={"uidb64": "MQ", "token": "abc-123"}): "abc-123",
        reverse("signup_confirm", kwargs={"signed": "payload:sig"}): "payload:sig",
    }
    for url, secret in examples.items():
        cleaned = redact(f'"GET {url} HTTP/1.1" 200 1')
        assert secret not in cleaned and "[REDACTED]" in cleaned
        assert any(p.search(url) for p in SECRET_ROUTES)
    assert redact("/connexion/mot-de-passe/envoye/") == "/connexion/mot-de-passe/envoye/"
    assert {"token", "sesame"} <= SECRET_PARAMETERS
