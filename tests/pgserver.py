"""A real PostgreSQL server for the test session.

The PostgreSQL leg of the suite is required, so this starts a throwaway PostgreSQL 15 cluster
(initdb + pg_ctl in a temporary directory, loopback only, durability off for speed) and
removes it afterwards; or it uses the server named by ``EDGEWARDEN_TEST_PG_URL``. Per-test
databases are cloned from a template database, which costs milliseconds instead of a
migration per test. Nothing here imports the project, so the fixture tests stand alone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

PG_MAJOR = 15
DEFAULT_BIN_DIR = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
EXTERNAL_URL_ENV = "EDGEWARDEN_TEST_PG_URL"
DRIVER = "postgresql+psycopg"
PARENT_DIR_ENV = "EDGEWARDEN_TEST_PG_DIR"
SHM_DIR = Path("/dev/shm")
MIN_SHM_FREE = 2 * 1024**3
STALE_AFTER_S = 3600

# Appended to postgresql.conf. Durability is pointless for a throwaway cluster, and turning it
# off makes CREATE DATABASE and commits cheap.
_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
fsync = off
full_page_writes = off
synchronous_commit = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 256MB
max_connections = 200
log_min_messages = warning
"""


class PgServerError(RuntimeError):
    """The test PostgreSQL server could not be started or reached."""


class PgServer:
    """A reachable PostgreSQL server and the admin operations the fixtures need."""

    def __init__(self, url: URL, managed: bool) -> None:
        self._url = url.set(drivername=DRIVER)
        self.managed = managed  # started by LocalCluster (else EDGEWARDEN_TEST_PG_URL)
        self._admin: psycopg.Connection | None = None

    @property
    def host(self) -> str:
        return self._url.host or "127.0.0.1"

    @property
    def port(self) -> int:
        return self._url.port or 5432

    @property
    def base_url(self) -> str:
        """``postgresql+psycopg://USER@HOST:PORT/``: append a database name."""
        return self._url.set(database="").render_as_string(hide_password=False)

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return self._url.set(database=database).render_as_string(hide_password=False)

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """A new autocommit psycopg connection (the caller closes it)."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self._url.username or "postgres",
            password=self._url.password or None,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def _admin_conn(self) -> psycopg.Connection:
        if self._admin is None or self._admin.closed:
            self._admin = self.connect(self._url.database or "postgres")
        return self._admin

    def execute(self, query: sql.Composed | str) -> None:
        """Run one statement on the admin connection (outside a transaction)."""
        self._admin_conn().execute(query)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` (dropping a leftover of that name first); return its URL.

        With ``template``, the new database is a file-level copy of it: the template must have
        no open connections, so ``seal_template`` it first.
        """
        self.drop_database(name)
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            # FILE_COPY copies the template's files; with fsync off it beats the default
            # WAL_LOG strategy for small databases (~6 ms against ~13 ms for the schema here).
            query = sql.SQL("{} TEMPLATE {} STRATEGY FILE_COPY").format(
                query, sql.Identifier(template)
            )
        self.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting whoever still uses it."""
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def seal_template(self, name: str) -> None:
        """Mark ``name`` as a template that nobody can connect to, and end its sessions.

        CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template; a test
        that forgot to dispose an engine must not break the databases of later tests.
        """
        ident = sql.Identifier(name)
        self.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(ident)
        )
        self.execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = {} AND pid <> pg_backend_pid()"
            ).format(sql.Literal(name))
        )

    def drop_template(self, name: str) -> None:
        """Drop a database that ``seal_template`` marked."""
        ident = sql.Identifier(name)
        self.execute(
            sql.SQL("UPDATE pg_database SET datistemplate = false WHERE datname = {}").format(
                sql.Literal(name)
            )
        )
        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))

    def server_version_num(self) -> int:
        row = self._admin_conn().execute("SHOW server_version_num").fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def external_server() -> PgServer | None:
    """The server named by ``EDGEWARDEN_TEST_PG_URL``, if that is set."""
    raw = os.environ.get(EXTERNAL_URL_ENV)
    if not raw:
        return None
    try:
        url = make_url(raw)
    except Exception as exc:
        raise PgServerError(f"{EXTERNAL_URL_ENV}={raw!r} is not a database URL: {exc}") from exc
    if not url.drivername.startswith("postgresql"):
        raise PgServerError(f"{EXTERNAL_URL_ENV} must be a postgresql:// URL, got {raw!r}")
    server = PgServer(url, managed=False)
    try:
        server.server_version_num()
    except psycopg.Error as exc:
        raise PgServerError(f"cannot reach the server in {EXTERNAL_URL_ENV}: {exc}") from exc
    return server


def cluster_parent_dir() -> Path:
    """Where clusters live: tmpfs when it has room, else /tmp; EDGEWARDEN_TEST_PG_DIR overrides.

    CREATE DATABASE copies a few hundred files: ~5 ms on tmpfs, ~100 ms on this machine's ext4.
    Not TMPDIR: as root the ``postgres`` user must be able to reach the directory.
    """
    override = os.environ.get(PARENT_DIR_ENV)
    if override:
        return Path(override)
    try:
        st = os.statvfs(SHM_DIR)
        if st.f_bavail * st.f_frsize >= MIN_SHM_FREE and os.access(SHM_DIR, os.W_OK):
            return SHM_DIR
    except OSError:
        pass
    return Path("/tmp")


def pid_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (PID 1 may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def remove_stale_clusters(parent: Path) -> None:
    """Delete cluster dirs that crashed sessions left behind (they hold RAM on tmpfs)."""
    for root in parent.glob("ew-pg-*"):
        try:
            if time.time() - root.stat().st_mtime < STALE_AFTER_S:
                continue
        except OSError:
            continue
        pid = _postmaster_pid(root / "data")
        if pid is None or not pid_running(pid):
            shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalCluster:
    """A throwaway cluster in a temporary directory, run as the ``postgres`` OS user.

    The server refuses to run as root, so as root every command goes through
    ``runuser -u postgres``; as any other user it runs as that user.
    """

    def __init__(self, bin_dir: Path = DEFAULT_BIN_DIR) -> None:
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.server: PgServer | None = None
        self._as_root = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"},
        )

    def _check(self, what: str, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode != 0:
            log = ""
            if self.root is not None and self.log_file.exists():
                log = "\n--- server log ---\n" + self.log_file.read_text(errors="replace")[-4000:]
            raise PgServerError(
                f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}{log}"
            )

    def start(self) -> PgServer:
        """initdb, configure and start; return the running server."""
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (self.bin_dir / tool).is_file():
                raise PgServerError(
                    f"PostgreSQL {PG_MAJOR} is not installed: {self.bin_dir / tool} is missing. "
                    "The PostgreSQL leg of the tests is required: run `bash scripts/setup.sh` "
                    f"(apt-get install postgresql) or point {EXTERNAL_URL_ENV} at a server."
                )
        owner: tuple[int, int] | None = None
        if self._as_root:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgServerError(
                    "running as root but there is no `postgres` OS user to run the server as "
                    "(it comes with Debian's postgresql package)"
                ) from None
            owner = (pw.pw_uid, pw.pw_gid)
        parent = cluster_parent_dir()
        remove_stale_clusters(parent)
        self.root = Path(tempfile.mkdtemp(prefix="ew-pg-", dir=parent))
        try:
            if owner is not None:
                os.chown(self.root, *owner)
            self._check(
                "initdb",
                self._run(
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                    "--no-instructions",
                ),
            )
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(_CONF.format(socket_dir=self.root))
            self.server = self._start_on_free_port()
            return self.server
        except BaseException:
            self.stop()
            raise

    def _start_on_free_port(self, attempts: int = 5) -> PgServer:
        # Another process may take the free port between the probe and the bind: retry.
        last: PgServerError | None = None
        for _ in range(attempts):
            port = _free_port()
            proc = self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                "30",
                "start",
            )
            try:
                self._check(f"pg_ctl start on port {port}", proc)
            except PgServerError as exc:
                last = exc
                if "could not bind" in str(exc) or "Address already in use" in str(exc):
                    continue
                raise
            url = URL.create(DRIVER, username="postgres", host="127.0.0.1", port=port)
            return PgServer(url, managed=True)
        assert last is not None
        raise last

    def stop(self) -> None:
        """Stop the server at once (no checkpoint) and remove the directory."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                proc = self._run(
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "20",
                    "stop",
                )
                if proc.returncode != 0:
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _kill_postmaster(self) -> None:
        # Only the postmaster this cluster started, by the PID it recorded.
        pid = _postmaster_pid(self.data_dir)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
