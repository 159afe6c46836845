"""`dagster dev` (webserver and daemon) on a free loopback port, driven through GraphQL.

``dagster_dev(tmp_dir)`` starts it with a fresh ``DAGSTER_HOME`` holding the shipped
``dagster_home/dagster.yaml`` and a fresh ``LAKEHOUSE_HOME``, in its own process group. On exit
(also on failure) the whole group is stopped (SIGTERM, then SIGKILL), and any process that
still has this ``DAGSTER_HOME`` in its environment is killed by pid and reported.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lakehouse_assets.sensors import LANDING_SENSOR
from lakehouse_assets_tests.mlflow_servers import HOST, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_INSTANCE_YAML = REPO_ROOT / "dagster_home" / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
LOCATION = "lakehouse_assets"
REPOSITORY = "__repository__"
START_TIMEOUT = 240.0  # webserver up and the code location loaded (2 busy cores)
STOP_GRACE = 20.0
CLEARED_ENV = ("LAKEHOUSE_LANDING_DIR", "LAKEHOUSE_DUCKDB_PATH", "MLFLOW_TRACKING_URI")
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LOCATION_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

RUNS_QUERY = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId status jobName startTime endTime tags { key value } } } } }
"""

TICKS_QUERY = """
query Ticks($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { __typename
  ... on Sensor { sensorState { status ticks(limit: 20) {
    id status timestamp skipReason runIds error { message } } } } } }
"""

TICK_LOGS_QUERY = """
query TickLogs($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { ticks(limit: 50) {
    timestamp logEvents { events { message } } } } } } }
"""

INSTANCE_QUERY = """
query { instance { poolConfig { poolGranularity defaultPoolLimit }
  runQueueConfig { maxConcurrentRuns }
  concurrencyLimit(concurrencyKey: "duckdb") { slotCount limit } } }
"""

ASSETS_QUERY = """
query { assetNodes { assetKey { path }
  assetMaterializations(limit: 1) { runId metadataEntries { label } }
  assetChecksOrError { __typename ... on AssetChecks { checks { name
    executionForLatestMaterialization { status runId } } } } } }
"""

STEP_FAILURES_QUERY = """
query Failures($runId: ID!) { logsForRun(runId: $runId) { __typename
  ... on EventConnection { events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message } } } } } }
"""


@dataclass
class DagsterDev:
    url: str
    dagster_home: Path
    lakehouse_home: Path
    log: Path
    process: subprocess.Popen

    @property
    def landing(self) -> Path:
        return self.lakehouse_home / "landing"

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient(HOST, port_number=int(self.url.rsplit(":", 1)[1]), timeout=60)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return self.client()._execute(query, variables)

    def log_tail(self, lines: int = 80) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def runs(self) -> list[dict]:
        """Every run of the instance, newest first."""
        data = self.graphql(RUNS_QUERY, {"filter": {}})["runsOrError"]
        assert data["__typename"] == "Runs", data
        return data["results"]

    def sensor_ticks(self, sensor: str) -> list[dict]:
        """The sensor's latest ticks, newest first."""
        data = self.graphql(TICKS_QUERY, {"selector": _sensor(sensor)})["sensorOrError"]
        assert data["__typename"] == "Sensor", data
        return data["sensorState"]["ticks"]

    def sensor_log(self, sensor: str, since: float = 0.0) -> list[str]:
        """What the sensor logged (`context.log`) in its ticks after `since` (epoch seconds)."""
        data = self.graphql(TICK_LOGS_QUERY, {"selector": _sensor(sensor)})["sensorOrError"]
        assert data["__typename"] == "Sensor", data
        return [
            event["message"]
            for tick in data["sensorState"]["ticks"]
            if tick["timestamp"] > since
            for event in tick["logEvents"]["events"]
        ]

    def assets(self) -> dict[str, dict]:
        """Per asset: the run of its latest materialization, its metadata labels, and the status
        of each of its checks at that materialization."""
        states = {}
        for node in self.graphql(ASSETS_QUERY)["assetNodes"]:
            latest = node["assetMaterializations"]
            checks = node["assetChecksOrError"].get("checks", [])
            states["/".join(node["assetKey"]["path"])] = {
                "run_id": latest[0]["runId"] if latest else None,
                "metadata": {e["label"] for e in latest[0]["metadataEntries"]} if latest else set(),
                "checks": {
                    c["name"]: (c["executionForLatestMaterialization"] or {}).get("status")
                    for c in checks
                },
            }
        return states

    def step_failures(self, run_id: str) -> list[str]:
        data = self.graphql(STEP_FAILURES_QUERY, {"runId": run_id})["logsForRun"]
        return [
            f"{e['stepKey']}: {e['error']['message']}"
            for e in data.get("events", [])
            if e["__typename"] == "ExecutionStepFailureEvent"
        ]

    def wait_for_run(self, run_id: str, timeout: float) -> str:
        """Wait until `run_id` ends; its final status."""
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            status = client.get_run_status(run_id).value
            if status in TERMINAL:
                return status
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited while waiting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} still {status} after {timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(1)


def _sensor(name: str) -> dict:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}


def _http_ok(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _wait_ready(dev: DagsterDev, port: int, timeout: float) -> None:
    """The webserver answers and the code location is LOADED (not an error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with {dev.process.returncode}:\n{dev.log_tail()}"
            )
        if _http_ok(port, "/server_info"):
            entries = dev.graphql(LOCATION_QUERY)["workspaceOrError"].get("locationEntries", [])
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                if loaded["__typename"] == "PythonError":
                    raise RuntimeError(f"code location failed to load: {loaded['message']}")
                return
        time.sleep(1)
    raise RuntimeError(f"dagster dev not ready within {timeout:.0f}s:\n{dev.log_tail()}")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of `pid`, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[2])


def _live_pids() -> list[int]:
    """Pids of processes that are alive (not zombies), except this one."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [
        pid
        for pid in pids
        if pid != os.getpid() and (stat := _proc_stat(pid)) is not None and stat[0] != "Z"
    ]


def _group_members(pgid: int) -> list[int]:
    return [pid for pid in _live_pids() if (stat := _proc_stat(pid)) and stat[1] == pgid]


def _processes_with_env(name: str, value: str) -> list[str]:
    """Live processes whose environment has `name=value` (Linux /proc), as "pid cmdline"."""
    needle = f"{name}={value}".encode()
    found = []
    for pid in _live_pids():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{pid} {cmdline.decode(errors='replace')[:200]}")
        except OSError:
            continue
    return found


def stop_process_group(proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM the group (dagster dev stops webserver, daemon and code server), then SIGKILL
    whatever is left, and wait until no member of the group is alive."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def user_env(tmp_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user in `tmp_dir`: DAGSTER_HOME is a copy of the shipped
    `dagster_home/` (as the README points at it), LAKEHOUSE_HOME is `tmp_dir/lakehouse`."""
    dagster_home = tmp_dir / "dagster_home"
    if not (dagster_home / "dagster.yaml").exists():
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHIPPED_INSTANCE_YAML, dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        LAKEHOUSE_HOME=str(tmp_dir / "lakehouse"),
        LAKEHOUSE_SENSOR_INTERVAL_SECONDS="5",
        PYTHONUNBUFFERED="1",
        **(extra_env or {}),
    )
    return env


def quickstart_run(tmp_dir: Path) -> subprocess.CompletedProcess:
    """The README's main command (`dagster asset materialize -m lakehouse_assets --select '*'`
    with DAGSTER_HOME at the shipped instance settings), in `tmp_dir`."""
    tmp_dir = Path(tmp_dir).resolve()
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
           "-m", "lakehouse_assets", "--select", "*"]  # fmt: skip
    return subprocess.run(
        cmd, cwd=tmp_dir, env=user_env(tmp_dir), capture_output=True, text=True, timeout=600
    )


@contextlib.contextmanager
def dagster_dev(tmp_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[DagsterDev]:
    """Run `dagster dev -w workspace.yaml` on a free loopback port, with the shipped instance
    settings in `tmp_dir/dagster_home` (kept if `quickstart_run` made it); yield it when loaded."""
    tmp_dir = Path(tmp_dir).resolve()
    env = user_env(tmp_dir, extra_env)
    dagster_home, lakehouse_home = Path(env["DAGSTER_HOME"]), Path(env["LAKEHOUSE_HOME"])
    port = free_port()
    log = tmp_dir / "dagster-dev.log"
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(WORKSPACE_YAML), "-h", HOST, "-p", str(port),
    ]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches every child
        )
    dev = DagsterDev(f"http://{HOST}:{port}", dagster_home, lakehouse_home, log, proc)
    leftovers: list[str] = []
    try:
        _wait_ready(dev, port, START_TIMEOUT)
        yield dev
    finally:
        stop_process_group(proc)
        # A process that left the group (setsid) but runs for this instance: kill it too.
        for found in _processes_with_env("DAGSTER_HOME", str(dagster_home)):
            leftovers.append(found)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(found.split()[0]), signal.SIGKILL)
    if leftovers:
        raise AssertionError(f"processes outlived dagster dev's process group: {leftovers}")


def wait_until_sensor_idle(dev: DagsterDev, timeout: float) -> None:
    """Until every run has ended and two sensor ticks after the last end found nothing to do."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = dev.runs()
        if all(r["status"] in TERMINAL for r in runs):
            last_end = max((r["endTime"] or 0 for r in runs), default=0)
            later = [t for t in dev.sensor_ticks(LANDING_SENSOR) if t["timestamp"] > last_end]
            failed = [t for t in later if t["status"] == "FAILURE"]
            assert not failed, f"sensor tick failed: {failed[0]['error']}"
            quiet = [t for t in later if (t["skipReason"] or "").startswith("No new or changed")]
            if len(quiet) >= 2 and len(quiet) == len(later):
                return
        time.sleep(2)
    raise AssertionError(f"sensor not idle after {timeout:.0f}s: {dev.runs()}\n{dev.log_tail()}")
