"""Server processes for tests, all started, waited for and stopped by `server_process`: each in
its own process group, so that stopping it leaves no worker behind, also when the test fails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import urllib3

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Inherited variables with these prefixes are dropped: a test server or deployment sets its own.
_DEPLOYMENT_PREFIXES = ("AWS_", "MLFLOW_", "LAKEHOUSE_", "DAGSTER_", "PG")


class ServerStartError(RuntimeError):
    """A server exited or was not ready in time (the message has its log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 60) -> str:
    return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status `GET url` answers, None if nothing answers (urllib3, unlike urllib and
    requests, sends nothing to a proxy named in the environment)."""
    with contextlib.suppress(urllib3.exceptions.HTTPError, OSError), urllib3.PoolManager() as pool:
        return pool.request("GET", url, timeout=timeout, retries=False, redirect=False).status


def clean_env(**extra: str) -> dict[str, str]:
    """`os.environ` without deployment variables, the venv's bin first on PATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DEPLOYMENT_PREFIXES)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


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


def stop(proc: subprocess.Popen, stop_signal: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """`stop_signal` to the leader, up to `grace` s for it to exit, then SIGKILL to the group until
    no member is alive (workers stay in the group after the leader exits)."""
    if proc.poll() is None:
        proc.send_signal(stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    deadline = time.monotonic() + 10
    while any(group == proc.pid for _, group in live_pids()) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)
    proc.wait()  # reap the leader


@contextlib.contextmanager
def server_process(
    name: str,
    cmd: list[str],
    log: Path | str,
    ready: Callable[[], bool] | str,
    timeout: float = 30.0,
    stop_signal: int = signal.SIGTERM,
    grace: float = 10.0,
    **popen_kwargs,
) -> Iterator[subprocess.Popen]:
    """Run `cmd` (output appended to `log`) until the block exits, then `stop` it. Yields once
    `ready()` is true (it may raise to give up) or, if `ready` is a URL, once `GET` on it answers
    any status; raises `ServerStartError` if the server exits or is not ready in `timeout` s."""
    if isinstance(ready, str):
        url, ready = ready, lambda: http_status(url) is not None
    with open(log, "ab") as out:  # own process group (session): killpg reaches every worker
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, **popen_kwargs)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            exited = proc.poll() is not None
            if exited or time.monotonic() > deadline:
                problem = f"exited with code {proc.returncode}" if exited else "was not ready"
                message = f"{name} {problem} in {timeout:.0f}s; log {log}:\n{log_tail(log)}"
                raise ServerStartError(message)
            time.sleep(0.2)
        yield proc
    finally:
        stop(proc, stop_signal, grace)


def run_command(cmd: list[str], env: dict | None, log: Path, timeout: float, **popen_kwargs) -> int:
    """Run `cmd` as `server_process` would, until it exits; its exit code. On timeout the whole
    group is killed and `TimeoutError` raised with the log tail."""
    with server_process(cmd[0], cmd, log, lambda: True, env=env, **popen_kwargs) as proc:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            message = f"{cmd[:4]} ran over {timeout:.0f}s; log {log}:\n{log_tail(log, 40)}"
            raise TimeoutError(message) from None
