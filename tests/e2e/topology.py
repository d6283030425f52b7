"""The production topology on loopback: PostgreSQL, Redis, an SMTP sink, gunicorn (2 workers), two Celery workers and
one beat, each a separate process with production settings (DEBUG off, whitenoise static files, JSON logs)."""

import contextlib
import email
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scripts.with_services import ROOT, Services, free_port, wait_port

PY = sys.executable


class Topology:
    def __init__(
        self, *, beat_interval: float | None = None, extra_env: dict[str, str] | None = None
    ) -> None:
        self.services = Services(pg=True, redis=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.beat_interval = beat_interval
        self.extra_env = extra_env or {}
        self.web_port = 0
        self.smtp_port = 0

    # --- lifecycle ------------------------------------------------------------------------------------------------
    def __enter__(self) -> "Topology":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base(self) -> Path:
        return self.services.base

    @property
    def maildir(self) -> Path:
        return self.base / "maildir"

    def start(self) -> None:
        self.services.start()
        self.web_port, self.smtp_port = free_port(), free_port()
        self.env = {
            **os.environ,
            **self.services.env,
            "DEBUG": "0",
            "SECRET_KEY": "e2e-secret-key-" + "x" * 40,
            "TOKEN_DIGEST_KEY": "e2e-digest-key",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SITE_URL": f"http://127.0.0.1:{self.web_port}",
            "EMAIL_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "STATIC_ROOT": str(self.base / "static"),
            "STATICFILES_BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage",
            "WHITENOISE_USE_FINDERS": "0",
            "LOG_FORMAT": "json",
            "CONN_MAX_AGE": "60",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        if self.beat_interval:
            self.env["REMINDER_SWEEP_INTERVAL_SECONDS"] = str(self.beat_interval)
        self.manage("migrate", "--noinput", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")
        self.start_smtp()
        self.spawn(
            "web",
            [PY, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--workers", "2"]
            + ["--bind", f"127.0.0.1:{self.web_port}"],
        )
        self.wait_ready()
        for name in ("worker1", "worker2"):
            self.start_worker(name)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
        self.services.stop()

    # --- processes ------------------------------------------------------------------------------------------------
    def manage(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [PY, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            input=input,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen(
            cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL, wait: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def start_worker(self, name: str, concurrency: int = 2) -> subprocess.Popen:
        return self.spawn(
            name,
            [
                PY,
                "-m",
                "celery",
                "-A",
                "tokenmgr",
                "worker",
                "-n",
                f"{name}@%h",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
        )

    def start_beat(self, name: str = "beat") -> subprocess.Popen:
        return self.spawn(
            name,
            [
                PY,
                "-m",
                "celery",
                "-A",
                "tokenmgr",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(self.base / f"{name}-schedule"),
            ],
        )

    def start_smtp(self) -> None:
        self.spawn(
            "smtp",
            [
                PY,
                str(ROOT / "scripts" / "smtp_sink.py"),
                "--port",
                str(self.smtp_port),
                "--maildir",
                str(self.maildir),
            ],
        )
        wait_port(self.smtp_port)

    def stop_smtp(self) -> None:
        self.kill("smtp", signal.SIGTERM)

    # --- observation ----------------------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 10
    ) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def get_json(self, path: str, **kwargs) -> tuple[int, dict]:
        status, _, body = self.get(path, **kwargs)
        return status, json.loads(body)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, _, _ = self.get("/readyz", timeout=2)
                if status == 200:
                    return
            if self.procs["web"].poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + self.log("web")[-3000:])
            time.sleep(0.2)
        raise RuntimeError("web never became ready:\n" + self.log("web")[-3000:])

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self) -> list[email.message.Message]:
        if not self.maildir.exists():
            return []
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(self.maildir.glob("*.eml"))]

    def sql(self, query: str) -> list[tuple]:
        out = subprocess.run(
            ["psql", self.services.env["DATABASE_URL"], "-tA", "-F", "\t", "-c", query],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    def wait_until(self, predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
