"""`make run`: web + Celery worker + Celery beat in one terminal; Ctrl-C stops all three."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ADDR = os.environ.get("RUN_ADDR", "127.0.0.1:8000")

PROCESSES = {
    "web": [PY, "manage.py", "runserver", ADDR, "--noreload"],
    "worker": [PY, "-m", "celery", "-A", "tokenmgr", "worker", "--pool=solo", "--loglevel=INFO"],
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


def main() -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DEBUG", "1")
    (ROOT / "var" / "broker" / "queue").mkdir(parents=True, exist_ok=True)
    (ROOT / "var" / "broker" / "processed").mkdir(parents=True, exist_ok=True)
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
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
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
