"""`make run`: web + Celery worker + Celery beat in one terminal; Ctrl-C stops all three."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ADDR = os.environ.get("RUN_ADDR", "127.0.0.1:8000")

PROCESSES = {
    "web": [PY, "manage.py", "runserver", ADDR, "--noreload"],
    "worker": [
        PY,
        "-m",
        "celery",
        "-A",
        "tokenmgr",
        "worker",
        "--pool=solo",
        "-Q",
        "celery,webhooks",
        "--loglevel=INFO",
    ],
    "beat": [
        PY,
        "-m",
        "celery",
        "-A",
        "tokenmgr",
        "beat",
        "--loglevel=INFO",
        "--schedule",
        str(ROOT / "var" / "celerybeat-schedule"),
    ],
}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _web_is_up() -> bool:
    host, _, port = ADDR.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


def _banner() -> str:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenmgr.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from tokens.management.commands import load_demo_data as demo

    base = f"http://{ADDR}"
    return (
        f"tokenmgr prêt : {base}/\n"
        f"  Connexion admin : {base}/admin/ — {demo.ADMIN_USERNAME} / {demo.ADMIN_PASSWORD}\n"
        f"  Connexion intégrateur : {base}/connexion/ — {demo.INTEGRATOR_USERNAME} / {demo.INTEGRATOR_PASSWORD}\n"
        f"  API : {base}/v2/privileges?token=… — Ctrl-C arrête le web, le worker et beat."
    )


def main() -> int:
    # Ctrl-C reaches this process through the terminal's process group; a plain kill (SIGTERM/SIGHUP) must stop
    # everything too. The children run in their own sessions and are stopped here, never left behind.
    # SIGINT is set explicitly: a parent that started us with SIGINT ignored (e.g. a `&` job) must not disable Ctrl-C.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DEBUG", "1")
    (ROOT / "var" / "broker" / "queue").mkdir(parents=True, exist_ok=True)
    (ROOT / "var" / "broker" / "processed").mkdir(parents=True, exist_ok=True)
    # STATIC_ROOT, which WhiteNoise serves as well (the settings create no folder).
    (ROOT / "var" / "static").mkdir(parents=True, exist_ok=True)
    procs = {
        name: subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        for name, cmd in PROCESSES.items()
    }
    print(
        f"tokenmgr: web on http://{ADDR}/ (pids {', '.join(f'{n}={p.pid}' for n, p in procs.items())}); "
        "Ctrl-C stops everything.",
        flush=True,
    )
    status = 0
    announced = False
    try:
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(
                        f"tokenmgr: {name} exited with status {proc.returncode}; stopping the others.",
                        file=sys.stderr,
                    )
                    status = proc.returncode or 1
                    raise KeyboardInterrupt
            if not announced and _web_is_up():
                announced = True
                print(_banner(), flush=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return status


if __name__ == "__main__":
    sys.exit(main())
