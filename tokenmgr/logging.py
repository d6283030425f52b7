"""Keep token secrets out of every log line."""

import datetime as dt
import json
import logging
import re

# `token=` (API secrets, login links) and `sesame=` (reminder links: a still-valid login) in a query string,
# any case, URL-encoded or not; and Bearer credentials.
_TOKEN_QUERY = re.compile(r"(?i)((?:^|[?&;\s\"'])(?:access_token|token|sesame)=)[^&\s\"']*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_SECRET = re.compile(r"tkm_[A-Za-z0-9_-]{10,}")
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    text = _TOKEN_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _SECRET.sub(REDACTED, text)


class RedactSecretsFilter(logging.Filter):
    """Rewrites the record's message, whatever logger emitted it (runserver, gunicorn, django.request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must still be logged, not crash logging
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        # gunicorn's access log formats from record.args dict in its own formatter; scrub known keys too.
        return True


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
