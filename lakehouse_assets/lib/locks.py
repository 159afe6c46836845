"""File locks that serialize processes on one machine (`flock`): released by the kernel when the
holder exits, so a killed run never leaves a stale lock behind."""

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

POLL_SECONDS = 0.2
REPORT_EVERY_SECONDS = 30.0
_held: set[Path] = set()  # the locks this process holds: flock would wait for itself forever


def acquire(path: Path, holder: str, log: Callable[[str], None]) -> IO[str]:
    """Take the exclusive lock `path` (created if needed), waiting as long as another process
    holds it and logging who does; returns the open file, to pass to `release`. `holder`
    describes this process to those who wait."""
    path = path.absolute()
    if path in _held:
        raise RuntimeError(f"{path} is already held by this process")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    waited, reported = time.monotonic(), 0.0
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            elapsed = time.monotonic() - waited
            if elapsed >= reported:
                log(f"Waiting for {path}: held by {_holder(path)} ({elapsed:.0f} s so far)")
                reported += REPORT_EVERY_SECONDS
            time.sleep(POLL_SECONDS)
    handle.seek(0)
    handle.truncate()
    since = datetime.now(UTC).isoformat(timespec="seconds")
    handle.write(json.dumps({"holder": holder, "pid": os.getpid(), "since": since}))
    handle.flush()
    _held.add(path)
    return handle


def release(handle: IO[str]) -> None:
    """Release a lock taken by `acquire`."""
    _held.discard(Path(handle.name))
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


@contextmanager
def held(path: Path, holder: str, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock `path` for the block."""
    handle = acquire(path, holder, log)
    try:
        yield
    finally:
        release(handle)


def _info(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _holder(path: Path) -> str:
    info = _info(path)
    if not info:
        return "another process"
    return f"{info.get('holder', 'another process')} (pid {info.get('pid')}, since {info.get('since')})"
