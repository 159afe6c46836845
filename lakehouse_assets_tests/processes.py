"""Server processes for tests, all started, waited for and stopped by `server_process`.

It runs a command in its own process group (output appended to a log) and yields once `ready()`
is true. On exit, also when the test fails, it sends `stop_signal` to the leader, waits up to
`grace` seconds, then SIGKILLs what is left of the group until no member is alive, so no worker
outlives a test. A server that exits or is not ready in time raises `ServerStartError`, with the
tail of its log.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]


class ServerStartError(RuntimeError):
    """A server exited or was not ready in time (the message has its log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status `GET url` answers, None if nothing answers (http.client: unlike urllib, it
    sends nothing to a proxy named in the environment)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def live_pids() -> list[tuple[int, int]]:
    """(pid, process group) of every live process (zombies left out), except this one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            state, _, group = text[text.rindex(")") + 2 :].split()[:3]
            if state != "Z" and int(stat.parent.name) != os.getpid():
                found.append((int(stat.parent.name), int(group)))
    return found


def _spawn(cmd: list[str], log: Path, **popen_kwargs) -> subprocess.Popen:
    with open(log, "ab") as out:  # own process group (session): killpg reaches every worker
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, **popen_kwargs)  # fmt: skip


def stop(proc: subprocess.Popen, stop_signal: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """`stop_signal` to the leader, up to `grace` s for it to exit, then SIGKILL to the group until
    no member is alive (workers stay in the group after the leader exits)."""
    if proc.poll() is None:
        proc.send_signal(stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.poll()  # reap the leader
        if time.monotonic() > deadline or all(g != proc.pid for _, g in live_pids()):
            break
        time.sleep(0.05)
    proc.wait()


@contextlib.contextmanager
def server_process(
    name: str,
    cmd: list[str],
    log: Path | str,
    ready: Callable[[], bool],
    timeout: float = 30.0,
    stop_signal: int = signal.SIGTERM,
    grace: float = 10.0,
    **popen_kwargs,
) -> Iterator[subprocess.Popen]:
    """Run `cmd` until the block exits, once `ready()` is true (it may raise to give up)."""
    proc = _spawn(cmd, Path(log), **popen_kwargs)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            exited = proc.poll() is not None
            if exited or time.monotonic() > deadline:
                problem = f"exited with code {proc.returncode}" if exited else "was not ready"
                raise ServerStartError(
                    f"{name} {problem} in {timeout:.0f}s; log {log}:\n{log_tail(log)}"
                )
            time.sleep(0.2)
        yield proc
    finally:
        stop(proc, stop_signal, grace)


def run_command(
    cmd: list[str], env: dict, log: Path, timeout: float, cwd: Path | None = None
) -> int:
    """Run `cmd` as `server_process` would, until it exits; its exit code. On timeout the whole
    group is killed and `TimeoutError` raised with the log tail."""
    proc = _spawn(cmd, log, env=env, cwd=cwd)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        message = f"{cmd[:4]} ran over {timeout:.0f}s; log {log}:\n{log_tail(log, 40)}"
        raise TimeoutError(message) from None
    finally:
        stop(proc, grace=5)
