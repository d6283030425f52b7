# gunicorn settings for production (see README). Secrets in access logs are redacted by the logger class.
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
logger_class = "tokenmgr.logging.GunicornLogger"
accesslog = "-"
errorlog = "-"
wsgi_app = "tokenmgr.wsgi:application"
