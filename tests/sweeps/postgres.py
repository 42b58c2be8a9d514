"""A throw-away PostgreSQL server on 127.0.0.1 for tests: started from Debian's binaries in a
temporary folder, on a free port, and stopped by its PID."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (Debian: /usr/lib/postgresql/<version>/bin)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, str(Path(found).resolve().parent))
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "postgres").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_server(binaries: Path, databases: tuple[str, ...] = ("optuna",)) -> Iterator[dict[str, str]]:
    """Run a server for the ``with`` block; yields ``{database: URL}`` (user postgres, no password).

    initdb refuses to run as root: as root, the server runs as the ``postgres`` user.
    """
    user = "postgres" if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="medkit_exp_pg_"))
    if user:
        account = pwd.getpwnam(user)
        os.chown(data, account.pw_uid, account.pw_gid)
    run_as = {"user": user, "group": pwd.getpwnam(user).pw_gid} if user else {}
    port = _free_port()
    subprocess.run(
        [str(binaries / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True, cwd=data, **run_as,
    )
    server = subprocess.Popen(
        [str(binaries / "postgres"), "-D", str(data / "db"), "-p", str(port), "-k", str(data),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=open(data / "server.log", "wb"), cwd=data, **run_as,
    )
    try:
        _wait_ready(port, server, data)
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in databases:
                cursor.execute(f"CREATE DATABASE {name}")
        connection.close()
        yield {name: f"postgresql://postgres@127.0.0.1:{port}/{name}" for name in databases}
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(data, ignore_errors=True)


def _wait_ready(port: int, server: subprocess.Popen, data: Path, timeout: float = 60) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {server.returncode}: {(data / 'server.log').read_text()[-2000:]}")
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
