"""The lab's MariaDB: Ironic's database when the lab runs several conductors.

Ironic's guidance: SQLite serves one all-in-one process only; an API and conductors in
separate processes share a MySQL/MariaDB database. The lab runs Debian's `mariadbd` as
one of its own services (k1prov.lab.procs), never the system's: its own datadir, socket
and pid file under the lab's directory, TCP on 127.0.0.1 at the lab's port only, started
by `lab up` and stopped by `lab down` like Ironic itself. Ironic reaches it over TCP with
PyMySQL (the lab venv's driver) as a user of its own that owns the `ironic` database.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from k1prov.errors import LabError

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
CLIENT = Path("/usr/bin/mariadb")
ADMIN = Path("/usr/bin/mariadb-admin")
# Ironic's database and its user (the user's password: LabSettings.mariadb_password_file).
DATABASE = "ironic"
DB_USER = "ironic"


def installed() -> bool:
    return MARIADBD.is_file() and INSTALL_DB.is_file() and CLIENT.is_file()


def server_argv(*, datadir: Path, socket_path: Path, pid_file: Path, port: int) -> list[str]:
    """mariadbd as a lab service: no my.cnf of the system (--no-defaults), only loopback;
    its errors on stderr, which procs.start appends to logs/mariadb.log.

    The lab runs as root and so does this server (--user=root): its files are the lab's,
    under the lab's directory, and it listens on 127.0.0.1 only.
    """
    return [str(MARIADBD), "--no-defaults", f"--datadir={datadir}", f"--socket={socket_path}",
            f"--pid-file={pid_file}", f"--port={port}", "--bind-address=127.0.0.1",
            "--user=root", "--skip-name-resolve", "--skip-log-bin",
            # A lab of a few hundred nodes: Ironic's whole database is a few MB; the default
            # 128 MB pool only costs memory on a 2-core machine shared with the others.
            "--innodb-buffer-pool-size=64M",
            # API (1 worker) and conductors each keep an oslo.db pool (5 + 10 overflow).
            "--max-connections=300",
            # The lab's database dies with the lab: no fsync per commit (the deploy phase
            # writes a node row on every state change).
            "--innodb-flush-log-at-trx-commit=2"]


def initialize(datadir: Path, *, timeout: float, log: Path) -> None:
    """Create the system tables in an empty datadir (once; a datadir that has them is kept)."""
    if (datadir / "mysql").is_dir():
        return
    if not installed():
        raise LabError(f"MariaDB is not installed ({MARIADBD}); run scripts/install.sh "
                       "(Debian package mariadb-server)")
    datadir.mkdir(parents=True, exist_ok=True)
    argv = [str(INSTALL_DB), "--no-defaults", f"--datadir={datadir}", "--user=root",
            "--skip-test-db", "--auth-root-authentication-method=socket"]
    _run(argv, what="mariadb-install-db", timeout=timeout, log=log)


def answers(socket_path: Path, *, timeout: float) -> bool:
    """True if the server answers `mariadb-admin ping` on its socket, as its root (unix_socket
    authentication: the lab is root). A bare TCP connect would be logged as an aborted
    connection each time, and the server blocks a host after 100 of them."""
    argv = [str(ADMIN), "--no-defaults", f"--socket={socket_path}", "--user=root",
            f"--connect-timeout={max(1, int(timeout))}", "ping"]
    try:
        out = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return out.returncode == 0


def ensure_database(socket_path: Path, *, password: str, timeout: float, log: Path) -> None:
    """Ironic's database and its user with `password` (idempotent: a changed password is set).

    Runs the client as the server's root over its socket (unix_socket authentication: the
    lab is root), the SQL on stdin so that the password is on no command line.
    """
    if "'" in password or "\\" in password:
        raise LabError("the lab's MariaDB password must not contain quotes or backslashes")
    sql = (f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb3;\n"
           f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
           f"ALTER USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
           f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{DB_USER}'@'127.0.0.1';\n")
    argv = [str(CLIENT), "--no-defaults", f"--socket={socket_path}", "--user=root", "--batch"]
    _run(argv, what="creating Ironic's MariaDB database", timeout=timeout, log=log, stdin=sql)


def connection_url(*, port: int, password: str) -> str:
    """Ironic's [database] connection (SQLAlchemy URL, PyMySQL driver)."""
    return f"mysql+pymysql://{DB_USER}:{password}@127.0.0.1:{port}/{DATABASE}?charset=utf8"


def _run(argv: list[str], *, what: str, timeout: float, log: Path, stdin: str | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        try:
            rc = subprocess.run(argv, input=stdin, text=True, stdout=out, stderr=subprocess.STDOUT,
                                stdin=None if stdin is not None else subprocess.DEVNULL,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise LabError(f"{what} did not finish in {timeout:.0f} s; log: {log}") from None
        except OSError as exc:
            raise LabError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LabError(f"{what} failed (exit {rc}); log: {log}\n{tail}")


def conductor_heartbeat_age(socket_path: Path, host: str, *, timeout: float) -> float | None:
    """Seconds since conductor `host` last checked in, if Ironic's conductors table has it
    online; None otherwise. Read as the server's root over its socket, so that the check
    needs none of the credentials the lab's API may ask for."""
    if "'" in host or "\\" in host:
        return None
    sql = (f"SELECT TIMESTAMPDIFF(SECOND, COALESCE(updated_at, created_at), UTC_TIMESTAMP()) "
           f"FROM {DATABASE}.conductors WHERE hostname = '{host}' AND online = 1")
    argv = [str(CLIENT), "--no-defaults", f"--socket={socket_path}", "--user=root",
            "--batch", "--skip-column-names", "-e", sql]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=timeout)
    except (subprocess.TimeoutExpired, OSError):
        return None
    text = out.stdout.strip()
    if out.returncode != 0 or not text.lstrip("-").isdigit():
        return None
    return float(text)
