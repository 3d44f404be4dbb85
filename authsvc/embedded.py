"""The zero-configuration local Postgres under AUTHSVC_DATA_DIR.

Uses the machine's Postgres server binaries (Debian's postgresql package, or any `initdb` /
`pg_ctl` on PATH or under AUTHSVC_PG_BIN). The cluster listens on 127.0.0.1 only, on a port
picked once and kept, with a password of its own stored next to it (mode 0600). Postgres
refuses to run as root, so when we are root the cluster runs as the `postgres` system user
(created by Debian's package) or, failing that, a dedicated `authsvc` user; when that user cannot
reach the data dir, the cluster's files go under /var/lib/authsvc instead (see pgdata_dir).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from authsvc.config import Settings

log = logging.getLogger("authsvc.embedded")

DB_NAME = "authsvc"
DB_USER = "authsvc"


class EmbeddedError(RuntimeError):
    """The embedded Postgres could not be started; the message says what to do."""


@dataclass(frozen=True)
class Cluster:
    data_dir: Path
    port: int
    password: str
    started_here: bool

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{DB_NAME}"


def find_bin_dir() -> Path:
    candidates: list[str] = []
    if os.environ.get("AUTHSVC_PG_BIN"):
        candidates.append(os.environ["AUTHSVC_PG_BIN"])
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(os.path.realpath(on_path)).parent))
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise EmbeddedError(
        "No Postgres server binaries found for the embedded database. Install them "
        "(apt-get install postgresql) or set DATABASE_URL to an existing database."
    )


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "authsvc"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(  # noqa: S603
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "authsvc"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("authsvc")


def _run(args: list[str], user: pwd.struct_passwd | None, timeout: float = 60) -> str:
    kwargs: dict = {"capture_output": True, "text": True, "timeout": timeout, "cwd": "/"}
    if user is not None:
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        kwargs["env"] = {**os.environ, "HOME": user.pw_dir or "/", "USER": user.pw_name}
    proc = subprocess.run(args, **kwargs)  # noqa: S603
    if proc.returncode != 0:
        raise EmbeddedError(
            f"{Path(args[0]).name} failed ({proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return proc.stdout


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` in a file that is owner-only (0600) from its creation: it is
    written under a temporary name opened with that mode, then renamed over `path`, so no
    other user can open it at any moment, nor find a half-written file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the server binds: connections of a stopped server in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "embedded.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pgdata_dir(data_dir: Path, user: pwd.struct_passwd | None = None) -> Path:
    """Where the cluster's files live: `<data_dir>/pgdata`, unless the system user the server
    runs as cannot reach the data dir (say it is under /root); then a directory of its own
    under /var/lib/authsvc, named after the data dir, which keeps only a pointer."""
    data_dir = data_dir.absolute()
    pointer = data_dir / "pgdata.path"
    if pointer.exists():
        return Path(pointer.read_text().strip())
    if user is None or _traversable(data_dir, user):
        return data_dir / "pgdata"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    elsewhere = Path("/var/lib/authsvc") / digest / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(elsewhere) + "\n")
    return elsewhere


def _traversable(path: Path, user: pwd.struct_passwd) -> bool:
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
            return False
    return True


def _running_port(pgdata: Path) -> int | None:
    """The port of the server running on `pgdata`, from its postmaster.pid, if it is alive."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return port


def with_database(settings: Settings) -> tuple[Settings, Cluster]:
    """The settings pointed at the embedded database under their data dir, started (or found
    running); the one place the zero-configuration default is decided. Development only:
    production refuses to start without DATABASE_URL (config.load_settings)."""
    cluster = ensure_running(settings.data_dir)
    return settings.with_database(cluster.url), cluster


def ensure_running(data_dir: Path) -> Cluster:
    """Initialise (first time) and start the cluster under `data_dir`; reuse a running one."""
    data_dir = data_dir.absolute()
    with _locked(data_dir):
        state_file = data_dir / "embedded.json"
        user = _run_as()
        pgdata = pgdata_dir(data_dir, user)
        bin_dir = find_bin_dir()
        if not (pgdata / "PG_VERSION").exists():
            state = _initdb(bin_dir, pgdata, user)
            write_private(state_file, json.dumps(state))
        state = json.loads(state_file.read_text())
        port = _running_port(pgdata)
        if port is not None:
            return Cluster(data_dir, port, state["password"], started_here=False)
        port = state.get("port") or _free_port()
        if not _port_free(port):
            port = _free_port()
        state["port"] = port
        write_private(state_file, json.dumps(state))
        start_server(bin_dir, pgdata, port, user)
        log.info("embedded postgres started", extra={"data_dir": str(data_dir), "port": port})
        return Cluster(data_dir, port, state["password"], started_here=True)


def start_server(bin_dir: Path, pgdata: Path, port: int, user: pwd.struct_passwd | None) -> None:
    """`pg_ctl start` on `port`, loopback only and no Unix socket, waiting until it accepts."""
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-t",
            "30",
            "-l",
            str(pgdata / "server.log"),
            "-o",
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            "start",
        ],
        user,
    )


def _initdb(bin_dir: Path, pgdata: Path, user: pwd.struct_passwd | None) -> dict:
    pgdata.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    pwfile = pgdata.parent / ".pwfile"
    write_private(pwfile, password + "\n")
    if user is not None:
        for path in (pgdata, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        if not _traversable(pgdata, user):
            raise EmbeddedError(
                f"The embedded Postgres runs as the system user {user.pw_name!r}, who cannot "
                f"reach {pgdata}. Point AUTHSVC_DATA_DIR elsewhere, or set DATABASE_URL."
            )
    pgdata.chmod(0o700)
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
                "--locale=C",
            ],
            user,
            timeout=120,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    # Start once on a throwaway port to create the database, then stop.
    port = _free_port()
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-o",
            opts,
            "-l",
            str(pgdata / "server.log"),
            "start",
        ],
        user,
    )
    try:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=DB_USER,
            password=password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        _run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"], user)
    return {"password": password, "port": None}


def stop(data_dir: Path) -> None:
    pgdata = pgdata_dir(data_dir)
    if _running_port(pgdata) is None:
        return
    _run([str(find_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"], _run_as())
    log.info("embedded postgres stopped", extra={"data_dir": str(data_dir)})


def wait_until_stopped(data_dir: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _running_port(pgdata_dir(data_dir)) is not None:
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)
