"""Keep secrets out of every log line: one redaction (`redact`) driven by one table of where secrets travel.

Secrets are found by where they are, never by their shape (legacy secrets have any shape):

- SECRET_ROUTES: paths whose named groups are secrets (the calendar key, the password-reset token, the sign-up
  confirmation); matched on the percent-decoded path, so an encoded variant is caught too;
- SECRET_PARAMETERS: query-string parameters (and `name=value` pairs anywhere) whose values are secrets, names
  compared percent-decoded and in any case; any other parameter whose decoded value carries a secret (a `next`
  URL, say) is dropped as well;
- credentials: `Authorization` header values and `Bearer` / `Basic` credentials.

RedactSecretsFilter applies it to every record of the configured console handler (runserver's django.server,
django.request, gunicorn's access and error logs, Celery's worker and task logs), message and traceback alike.
"""

import datetime as dt
import json
import logging
import logging.config
import re
from urllib.parse import unquote, unquote_plus

from celery import signals

REDACTED = "[REDACTED]"

_SEGMENT = r"[^/?#\s\"'<>]+"
SECRET_ROUTES: tuple[re.Pattern, ...] = (
    # portal: the private calendar feed (its key is the only credential)
    re.compile(rf"/calendrier/(?P<key>{_SEGMENT})\.ics"),
    # portal: password reset confirmation (Django's token; the uidb64 before it only names the account)
    re.compile(rf"/connexion/mot-de-passe/{_SEGMENT}/(?P<token>{_SEGMENT})/"),
    # tokens: sign-up confirmation link (a signed, still-valid payload)
    re.compile(rf"/inscription/confirmer/(?P<signed>{_SEGMENT})/"),
)
# API secrets (/v2/privileges?token=), login links (/connexion/lien/?token=), reminder links (?sesame=), sessions.
SECRET_PARAMETERS = frozenset(
    {"token", "access_token", "sesame", "secret", "password", "api_key", "apikey", "sessionid"}
)

# A path or an absolute URL, up to the next blank or quote.
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'/?#<>]*)?/[^\s\"'<>]*")
# `name=value` outside a URL (a bare query string, a Cookie header, a message): SECRET_PARAMETERS by name (possibly
# encoded), any other when its decoded value carries a secret.
_PAIR = re.compile(r"(?i)(?<![\w%])((?:[\w.~-]|%[0-9a-f]{2})+)(=|%3d)((?!\[REDACTED\])[^&;\s\"',)}\]]*)")
_AUTHORIZATION = re.compile(
    r"(?i)((?:proxy[-_])?(?:http_)?authorization[\"']?\s*[:=]\s*[\"']?)([^\"'\n\r,}]+)"
)
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"',;]+")
# A last net for this application's own secrets, wherever they end up.
_OWN_SECRET = re.compile(r"tkm_[A-Za-z0-9_-]{10,}")


def _blank_groups(match: re.Match) -> str:
    text, start = match.group(), match.start()
    pieces, last = [], 0
    for name in sorted(match.re.groupindex, key=match.start):
        if match.start(name) < 0:
            continue
        pieces += [text[last : match.start(name) - start], REDACTED]
        last = match.end(name) - start
    return "".join(pieces) + text[last:]


def _redact_routes(path: str) -> str:
    for pattern in SECRET_ROUTES:
        path = pattern.sub(_blank_groups, path)
    return path


def _redact_query(query: str) -> str:
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if not eq:
            continue
        secret_name = unquote_plus(name).strip().lower() in SECRET_PARAMETERS
        # Any other value that carries a secret (a `next` URL with a sesame, say) is dropped whole.
        if secret_name or (value and redact(decoded := unquote_plus(value)) != decoded):
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


def _redact_url_like(text: str) -> str:
    return _URL.sub(lambda m: _redact_url(m.group()), text)


def _redact_url(url: str) -> str:
    path, sep, query = url.partition("?")
    decoded = unquote(path)
    redacted = _redact_routes(decoded)
    if redacted != decoded:
        path = redacted
    return path + sep + (_redact_query(query) if sep else "")


def _redact_pair(match: re.Match) -> str:
    name, eq, value = match.groups()
    if unquote_plus(name).lower() in SECRET_PARAMETERS or (
        value and redact(decoded := unquote_plus(value)) != decoded
    ):
        return f"{name}{eq}{REDACTED}"
    return match.group()


def redact(text: str) -> str:
    """`text` without any secret of the table above."""
    text = _redact_url_like(text)
    text = _PAIR.sub(_redact_pair, text)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _CREDENTIALS.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _OWN_SECRET.sub(REDACTED, text)


_traceback_formatter = logging.Formatter()


class RedactSecretsFilter(logging.Filter):
    """Rewrites the record's message and traceback, whatever logger emitted it (runserver, gunicorn, Celery)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must still be logged, not crash logging
            message = redact(str(record.msg))
            record.msg, record.args = message, None
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


@signals.setup_logging.connect
def _celery_uses_django_logging(**kwargs):
    """Celery workers and beat log through LOGGING (redacting console handler) instead of their own handlers."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def _gunicorn_logger_class():
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):
        """gunicorn's logger with the redaction filter on its access and error logs."""

        def setup(self, cfg):
            super().setup(cfg)
            for log in (self.access_log, self.error_log):
                log.addFilter(RedactSecretsFilter())
                for handler in log.handlers:
                    handler.addFilter(RedactSecretsFilter())

    return GunicornLogger


def __getattr__(name: str):
    # Lazy so that importing this module does not need gunicorn (e.g. under runserver).
    if name == "GunicornLogger":
        return _gunicorn_logger_class()
    raise AttributeError(name)
