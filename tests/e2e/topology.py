"""The production topology on loopback: PostgreSQL, Redis, an SMTP sink, gunicorn (2 workers), two Celery workers and
one beat, each a separate process with production settings (DEBUG off, whitenoise static files, JSON logs)."""

import atexit
import contextlib
import csv
import datetime as dt
import email
import email.parser
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

from scripts.with_services import ROOT, Services, free_port, wait_port

PY = sys.executable
TIME_ZONE = ZoneInfo(os.environ.get("TIME_ZONE", "Europe/Paris"))


def today() -> dt.date:
    return dt.datetime.now(TIME_ZONE).date()


def issued_on_for(days_left: int) -> dt.date:
    """An issue day whose 18-month expiry falls `days_left` days from today (a day or two later at month ends)."""
    target = today() + dt.timedelta(days=days_left)
    months = target.year * 12 + target.month - 1 - 18
    first = dt.date(months // 12, months % 12 + 1, 1)
    return first + dt.timedelta(days=target.day - 1)


class Topology:
    # collectstatic (compressed manifest) takes ~10 s: it runs once per test process, later topologies reuse it.
    _static_root: Path | None = None

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
    def static_root(self) -> Path:
        return self._shared_static_root()

    @property
    def maildir(self) -> Path:
        return self.base / "maildir"

    @property
    def metrics_dir(self) -> Path:
        """The web workers' prometheus-client files (multiprocess mode): /metrics adds them up."""
        return self.base / "prometheus"

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
            "STATIC_ROOT": str(self._shared_static_root()),
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
        if not (Path(self.env["STATIC_ROOT"]) / "staticfiles.json").exists():
            self.manage("collectstatic", "--noinput", "-v0")
        self.start_smtp()
        self.spawn(
            "web",
            [PY, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--workers", "2"]
            + ["--bind", f"127.0.0.1:{self.web_port}"],
            env={"PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)},
        )
        self.wait_ready()
        for name in ("worker1", "worker2"):
            self.start_worker(name)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
        self.services.stop()

    @classmethod
    def _shared_static_root(cls) -> Path:
        if cls._static_root is None:
            run_dir = ROOT / "var" / "services"
            run_dir.mkdir(parents=True, exist_ok=True)
            cls._static_root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-static-", dir=run_dir))
            atexit.register(shutil.rmtree, cls._static_root, ignore_errors=True)
        return cls._static_root

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

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen(
            cmd,
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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

    def start_worker(
        self, name: str, concurrency: int = 2, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
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
                "-Q",
                "celery,webhooks",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env=env,
        )

    def start_beat(self, name: str = "beat", env: dict[str, str] | None = None) -> subprocess.Popen:
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
            env=env,
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
        last = b""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, _, last = self.get("/readyz", timeout=10)
                if status == 200:
                    return
            if self.procs["web"].poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + self.log("web")[-3000:])
            time.sleep(0.2)
        raise RuntimeError(f"web never became ready ({last[:300]!r}):\n" + self.log("web")[-3000:])

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

    def headers(
        self, names=("Message-ID", "To", "X-Token-Id", "X-Reminder-Threshold", "X-Reminder-Route")
    ) -> list[dict]:
        """The named headers of every message in the sink, with the file's mtime (when the sink stored it)."""
        if not self.maildir.exists():
            return []
        parser = email.parser.BytesHeaderParser()
        out = []
        for path in self.maildir.glob("*.eml"):
            with path.open("rb") as f:
                message = parser.parse(f)
            out.append({**{n: message[n] for n in names}, "stored_at": path.stat().st_mtime})
        return out

    def mail_count(self) -> int:
        return sum(1 for _ in self.maildir.glob("*.eml")) if self.maildir.exists() else 0

    def issue_secret(self, *, siret: str = "13002526500013", privileges: str = "entreprises") -> str:
        """A new token through manage.py issue_token; its secret (alone on the last line of stdout, docs/commands.md)."""
        out = self.manage("issue_token", "--siret", siret, "--privileges", privileges).stdout
        return out.strip().splitlines()[-1]

    def import_due_tokens(
        self, count: int, *, days_left: int = 10, siret: str = "13002526500013", contacts: int = 1
    ) -> None:
        """`count` tokens (`contacts` distinct contacts each) expiring in about `days_left` days, through
        import_tokens."""
        issued_on = issued_on_for(days_left)
        path = self.base / f"import-{time.monotonic_ns()}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["siret", "name", "label", "privileges", "issued_at", "origin", "contacts", "secret"]
            )
            for i in range(count):
                at = dt.datetime.combine(issued_on, dt.time(12, 0)) + dt.timedelta(seconds=i)
                writer.writerow(
                    [
                        siret,
                        "DINUM",
                        f"{path.stem} {i}",
                        "entreprises",
                        at.isoformat(),
                        "api_gouv",
                        " ".join(f"holder{i}.{k}@e2e.example" for k in range(contacts)),
                        "",
                    ]
                )
        self.manage("import_tokens", str(path))

    def ledger(self) -> list[dict]:
        """Every reminder row with its token's public id."""
        rows = self.sql(
            "SELECT t.public_id, r.threshold, r.status, coalesce(extract(epoch FROM r.sent_at)::text, '') "
            "FROM notifications_reminder r JOIN tokens_token t ON t.id = r.token_id"
        )
        keys = ("token", "threshold", "status", "sent_at")
        return [
            {**dict(zip(keys, row, strict=True)), "sent_at": float(row[3]) if row[3] else None}
            for row in rows
        ]

    def outbox(self) -> list[dict]:
        """Every reminder message (one per reminder and recipient) with its token's public id and threshold."""
        rows = self.sql(
            "SELECT t.public_id, r.threshold, m.email, m.status, m.attempts, "
            "coalesce(extract(epoch FROM m.sent_at)::text, ''), m.message_id "
            "FROM notifications_remindermessage m JOIN notifications_reminder r ON r.id = m.reminder_id "
            "JOIN tokens_token t ON t.id = r.token_id"
        )
        keys = ("token", "threshold", "email", "status", "attempts", "sent_at", "message_id")
        return [
            {**dict(zip(keys, row, strict=True)), "sent_at": float(row[5]) if row[5] else None}
            for row in rows
        ]

    def celery_send(self, task: str, count: int = 1) -> None:
        """Publish `task` `count` times on the broker, from outside (a manage.py shell)."""
        code = f"from tokenmgr.celery import app\nfor _ in range({count}): app.send_task({task!r})"
        self.manage("shell", "-c", code)
