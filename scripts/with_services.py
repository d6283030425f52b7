"""Run a command against throw-away PostgreSQL and Redis instances on free loopback ports.

    python scripts/with_services.py [--no-pg] [--no-redis] -- COMMAND [ARGS...]

Data lives under var/services/<id>/ (or a temporary folder when the postgres user cannot reach var/), and both
servers are stopped and removed when the command ends, whatever its outcome. The command sees DATABASE_URL,
REDIS_URL and CELERY_BROKER_URL pointing at them, and throw-away SECRET_KEY / TOKEN_DIGEST_KEY unless the environment
has its own (the settings refuse the development keys when DEBUG is off); the exit status is the command's.
"""

import argparse
import contextlib
import glob
import os
import secrets
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
    """Throw-away PostgreSQL and Redis; each can be stopped and started again on the same port and data."""

    def __init__(self, pg: bool, redis: bool) -> None:
        self.want_pg, self.want_redis = pg, redis
        self.base: Path | None = None
        self.pg_base: Path | None = None
        self.pg_port = 0
        self.redis_port = 0
        self.redis_proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    @property
    def pg_data(self) -> Path | None:
        return self.pg_base / "pg" if self.pg_base else None

    def start(self) -> None:
        run_dir = ROOT / "var" / "services"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=run_dir))
        self.base.chmod(0o777)
        if self.want_pg:
            self._init_pg()
            self.pg_start()
            self._pg_run("createdb", "tokenmgr")
            self.env.update(
                DATABASE_URL=f"postgres://postgres@127.0.0.1:{self.pg_port}/tokenmgr",
                PGPORT=str(self.pg_port),
                TOKENMGR_PG_DATA=str(self.pg_data),
                TOKENMGR_PG_BINDIR=str(pg_bindir()),
            )
        if self.want_redis:
            self.redis_port = free_port()
            self.redis_start()
            self.env.update(
                REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
                CELERY_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/1",
                REDIS_PORT=str(self.redis_port),
            )

    # PostgreSQL -------------------------------------------------------------------------------------------------
    def _init_pg(self) -> None:
        self.pg_base = self.base
        if not postgres_can_use(self.base):
            self.pg_base = Path(tempfile.mkdtemp(prefix="tokenmgr-pg-"))
            self.pg_base.chmod(0o777)
        self.pg_port = free_port()
        initdb = [str(pg_bindir() / "initdb"), "-D", str(self.pg_data), "-U", "postgres", "-A", "trust"]
        initdb += ["-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        subprocess.run(as_postgres(initdb), check=True, stdout=subprocess.DEVNULL)

    def _pg_run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(pg_bindir() / tool), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", *args],
            check=True,
        )

    def pg_start(self) -> None:
        opts = (
            f"-p {self.pg_port} -k {self.pg_base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=2GB "
            # A 1M-row import_tokens (bench/import.py) works on ~1.5 GB of tables and indexes: in shared buffers,
            # without a checkpoint every GB of WAL (1M rows: 73.7 s -> 66.6 s).
            "-c max_wal_size=4GB -c checkpoint_timeout=30min -c wal_buffers=64MB"
        )
        ctl = [
            str(pg_bindir() / "pg_ctl"),
            "-D",
            str(self.pg_data),
            "-o",
            opts,
            "-l",
            str(self.pg_base / "pg.log"),
        ]
        subprocess.run(as_postgres([*ctl, "-w", "start"]), check=True, stdout=subprocess.DEVNULL)

    def pg_stop(self, mode: str = "fast") -> None:
        if self.pg_data and (self.pg_data / "postmaster.pid").exists():
            subprocess.run(
                as_postgres([str(pg_bindir() / "pg_ctl"), "-D", str(self.pg_data), "-m", mode, "-w", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    # Redis ------------------------------------------------------------------------------------------------------
    def redis_start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            sys.exit("with_services: redis-server not found; install the redis-server package")
        self.redis_proc = subprocess.Popen(
            [
                server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            + ["--dir", str(self.base), "--logfile", str(self.base / "redis.log")],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.redis_port)

    def redis_stop(self) -> None:
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            try:
                self.redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.redis_proc.kill()
                self.redis_proc.wait()

    def stop(self) -> None:
        self.redis_stop()
        self.pg_stop(mode="immediate")
        for path in {self.base, self.pg_base}:
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
        keys = {name: secrets.token_urlsafe(48) for name in ("SECRET_KEY", "TOKEN_DIGEST_KEY")}
        proc = subprocess.Popen(command, env={**keys, **os.environ, **services.env})
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
