"""Run a command against throw-away PostgreSQL and Redis instances on free loopback ports.

    python scripts/with_services.py [--no-pg] [--no-redis] -- COMMAND [ARGS...]

Data lives under var/services/<id>/ (or a temporary folder when the postgres user cannot reach var/), and both
servers are stopped and removed when the command ends, whatever its outcome. The command sees DATABASE_URL,
REDIS_URL and CELERY_BROKER_URL pointing at them; the exit status is the command's.
"""

import argparse
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    sys.exit("with_services: PostgreSQL binaries (initdb) not found; install postgresql")


def as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def postgres_can_use(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    return subprocess.run(as_postgres(["test", "-w", str(path)]), check=False).returncode == 0


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


class Services:
    def __init__(self, pg: bool, redis: bool) -> None:
        self.want_pg, self.want_redis = pg, redis
        self.base: Path | None = None
        self.pg_data: Path | None = None
        self.redis_proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def start(self) -> None:
        run_dir = ROOT / "var" / "services"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=run_dir))
        self.base.chmod(0o777)
        if self.want_pg:
            self._start_pg()
        if self.want_redis:
            self._start_redis()

    def _start_pg(self) -> None:
        bindir = pg_bindir()
        base = self.base
        if not postgres_can_use(base):
            base = Path(tempfile.mkdtemp(prefix="tokenmgr-pg-"))
            base.chmod(0o777)
        self.pg_data = base / "pg"
        port = free_port()
        subprocess.run(
            as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.pg_data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        opts = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB"
        )
        subprocess.run(
            as_postgres(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-o",
                    opts,
                    "-l",
                    str(base / "pg.log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                str(bindir / "createdb") if Path(bindir / "createdb").exists() else "createdb",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "tokenmgr",
            ],
            check=True,
        )
        self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{port}/tokenmgr"
        self.env["PGPORT"] = str(port)
        self.env["TOKENMGR_PG_DATA"] = str(self.pg_data)
        self.env["TOKENMGR_PG_BINDIR"] = str(bindir)

    def _start_redis(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            sys.exit("with_services: redis-server not found; install the redis-server package")
        port = free_port()
        self.redis_proc = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.base),
                "--logfile",
                str(self.base / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(port)
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        self.env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{port}/1"
        self.env["REDIS_PORT"] = str(port)

    def stop(self) -> None:
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            try:
                self.redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
        if self.pg_data and (self.pg_data / "postmaster.pid").exists():
            subprocess.run(
                as_postgres(
                    [str(pg_bindir() / "pg_ctl"), "-D", str(self.pg_data), "-m", "immediate", "-w", "stop"]
                ),
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for path in {self.base, self.pg_data.parent if self.pg_data else None}:
            if path:
                shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is required after --")
    services = Services(pg=not args.no_pg, redis=not args.no_redis)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        services.start()
        proc = subprocess.Popen(command, env={**os.environ, **services.env})
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            return 130
    finally:
        services.stop()


if __name__ == "__main__":
    sys.exit(main())
