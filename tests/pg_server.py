"""A throw-away PostgreSQL server for tests (e.g. optuna's RDB storage of a sweep on a real database server).

``postgres_server(tmp_dir)`` runs ``initdb`` and ``pg_ctl`` in a fresh folder: trust authentication, listening on
127.0.0.1 on a free port, its unix socket in that folder, durability off (a test database), and yields an SQLAlchemy
URL; on exit the server is stopped and the folder removed. PostgreSQL refuses to run as root: as root, the server runs
as the unprivileged ``postgres`` system user (``runuser``, else ``su``) in a folder it owns. ``postgres_unavailable_
reason()`` says why no server can be run here (for ``pytest.skip``), or ``None``.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DB_USER = "ghostnets"  # the cluster's superuser (trust authentication: no password)
DB_NAME = "ghostnets_test"
SERVER_USER = "postgres"  # the OS user the server runs as when the tests run as root
TIMEOUT_S = 30
SOCKET_DIR_MAX = 80  # sun_path holds 107 bytes; .s.PGSQL.PORT takes 16 of them
_SETTINGS = ("listen_addresses = '127.0.0.1'", "fsync = off", "synchronous_commit = off", "full_page_writes = off",
             "max_connections = 20", "shared_buffers = 16MB")


def _binary(name: str) -> str | None:
    """``name`` on PATH, else in the newest /usr/lib/postgresql/N/bin (Debian's layout keeps them off PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    """``cmd`` run as ``user`` (``None``: as ourselves)."""
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    return ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]


def _server_user() -> str | None:
    return SERVER_USER if os.geteuid() == 0 else None


@functools.cache
def postgres_unavailable_reason() -> str | None:
    """Why a throw-away PostgreSQL server cannot run here (a sentence for ``pytest.skip``), or ``None`` when it can."""
    missing = [n for n in ("initdb", "pg_ctl") if _binary(n) is None]
    if missing:
        return (f"PostgreSQL's {' and '.join(missing)} not found on PATH or in /usr/lib/postgresql/*/bin; install "
                f"the server (e.g. apt-get install postgresql) to run this test")
    if importlib.util.find_spec("psycopg2") is None:
        return "the PostgreSQL driver psycopg2 is not installed: pip install psycopg2-binary"
    user = _server_user()
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return (f"running as root, and PostgreSQL refuses to run as root, but there is no {user!r} user to run it "
                    f"as; create one (useradd --system --create-home {user}) or run the tests as an ordinary user")
        if not (shutil.which("runuser") or shutil.which("su")):
            return f"running as root and neither runuser nor su is found to run PostgreSQL as {user!r}"
    try:  # the user can run the binaries (a root-only install directory would stop it)
        subprocess.run(_as_user([_binary("initdb"), "--version"], user), check=True, capture_output=True,
                       timeout=TIMEOUT_S, cwd="/")
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot run initdb{f' as {user!r}' if user else ''}: {e}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _usable_by(folder: Path, user: str | None) -> bool:
    """Whether ``user`` can create a folder in ``folder`` (pytest's root-owned tmp_path is mode 0700)."""
    if user is None:
        return os.access(folder, os.W_OK | os.X_OK)
    return subprocess.run(_as_user(["test", "-w", str(folder), "-a", "-x", str(folder)], user),
                          capture_output=True, timeout=TIMEOUT_S, cwd="/").returncode == 0


def _run(cmd: list[str], user: str | None, cwd: Path, what: str) -> None:
    result = subprocess.run(_as_user(cmd, user), capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({shlex.join(cmd)}, exit {result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")


@contextlib.contextmanager
def postgres_server(tmp_dir: str | os.PathLike, *, details: dict | None = None) -> Iterator[str]:
    """A PostgreSQL server for the ``with`` block: yields ``postgresql+psycopg2://USER@127.0.0.1:PORT/DB``.

    Its folder (data directory, log, unix socket) is made in ``tmp_dir`` when the server's user can write there and
    its path is short enough for a unix socket, else in the system's temporary folder; ``details`` (if given)
    receives ``dir``, ``port`` and ``log``. The server is stopped (``pg_ctl stop -m immediate``) and the folder
    removed on exit, also after an error.
    """
    reason = postgres_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    import psycopg2

    user = _server_user()
    base = Path(tmp_dir)
    if not base.is_dir():
        raise ValueError(f"tmp_dir {base} is not a folder; pass an existing folder (e.g. pytest's tmp_path)")
    # the unix socket's path (folder/.s.PGSQL.PORT) must fit in 107 bytes: a long tmp_dir gives way to /tmp
    short = len(str(base.resolve())) <= SOCKET_DIR_MAX - len("/ghostnets-pg-XXXXXXXX")
    folder = Path(tempfile.mkdtemp(prefix="ghostnets-pg-", dir=base if short and _usable_by(base, user) else None))
    data, log = folder / "data", folder / "server.log"
    pg_ctl = _binary("pg_ctl")
    started = False
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chmod(folder, 0o700)
        _run([_binary("initdb"), "-D", str(data), "-U", DB_USER, "--auth=trust", "--encoding=UTF8", "--no-locale",
              "--no-sync"], user, folder, "initdb")
        with open(data / "postgresql.conf", "a") as f:
            f.write("\n# ghostnets tests/pg_server.py\n" + "\n".join(_SETTINGS) +
                    f"\nunix_socket_directories = '{folder}'\n")
        for attempt in range(3):  # another process may take the free port before the server binds it
            port = _free_port()
            try:
                _run([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", str(TIMEOUT_S), "-o", f"-p {port}",
                      "start"], user, folder, "pg_ctl start")
                started = True
                break
            except RuntimeError:
                if attempt == 2:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                    raise RuntimeError(f"PostgreSQL did not start; its log ends:\n{tail}") from None
                time.sleep(0.2)
        if details is not None:
            details.update(dir=folder, port=port, log=log)
        connection = psycopg2.connect(host="127.0.0.1", port=port, user=DB_USER, dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            connection.close()
        yield f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"
    finally:
        if started:
            _stop(pg_ctl, data, user, folder)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(pg_ctl: str, data: Path, user: str | None, folder: Path) -> None:
    """``pg_ctl stop -m immediate``; should it fail, SIGKILL to the postmaster this module started (its pid file)."""
    pid_file = data / "postmaster.pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
    try:
        _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", str(TIMEOUT_S), "stop"], user, folder,
             "pg_ctl stop")
    except (RuntimeError, subprocess.SubprocessError):
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
