# gunicorn settings for production (see README).
# Every access and error line goes through tokenmgr.logging.redact (the logger class adds its filter): secrets in
# paths, query strings, the referer and header values never reach the log.
import os
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
logger_class = "tokenmgr.logging.GunicornLogger"
accesslog = "-"
errorlog = "-"
# The combined format, and the request id the application answered with.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
wsgi_app = "tokenmgr.wsgi:application"

# /metrics adds up every worker's counters: prometheus-client's multiprocess mode, each process writing its figures to
# files in PROMETHEUS_MULTIPROC_DIR. Set before anything imports prometheus_client (it reads it at import time); the
# master empties the directory when it starts (on_starting) and drops a dead worker's live gauges (child_exit).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(__file__).resolve().parent / "var" / "prometheus")


def on_starting(server):
    """A new master: figures of a previous run's processes are not this run's (only prometheus-client's *.db files
    are removed, whatever directory was configured)."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# Settings are read once in the master, before any worker starts: a refused configuration (a missing production
# key, say) stops gunicorn at start-up with its one-line reason instead of a loop of failing workers.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenmgr.settings")
import tokenmgr.settings  # noqa: E402, F401
