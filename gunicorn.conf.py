# gunicorn settings for production (see README). Secrets in access logs are redacted by the logger class.
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
logger_class = "tokenmgr.logging.GunicornLogger"
accesslog = "-"
errorlog = "-"
wsgi_app = "tokenmgr.wsgi:application"

# Settings are read once in the master, before any worker starts: a refused configuration (a missing production
# key, say) stops gunicorn at start-up with its one-line reason instead of a loop of failing workers.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenmgr.settings")
import tokenmgr.settings  # noqa: E402, F401
