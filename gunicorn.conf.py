# gunicorn settings for production (see README).
# Every access and error line goes through tokenmgr.logging.redact (the logger class adds its filter): secrets in
# paths, query strings, the referer and header values never reach the log.
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
logger_class = "tokenmgr.logging.GunicornLogger"
accesslog = "-"
errorlog = "-"
# The combined format, and the request id the application answered with.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
wsgi_app = "tokenmgr.wsgi:application"

# Settings are read once in the master, before any worker starts: a refused configuration (a missing production
# key, say) stops gunicorn at start-up with its one-line reason instead of a loop of failing workers.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenmgr.settings")
import tokenmgr.settings  # noqa: E402, F401
