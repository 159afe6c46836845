"""`dagster dev` (webserver and daemon) on a free loopback port, with the shipped instance
settings, driven through GraphQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lakehouse_assets.defs.automation.landing_sensor import LANDING_SENSOR
from lakehouse_assets_tests.support.processes import (
    HOST,
    REPO_ROOT,
    clean_env,
    free_port,
    http_status,
    live_pids,
    log_tail,
    server_process,
)

SHIPPED_INSTANCE_YAML = REPO_ROOT / "dagster_home" / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
LOCATION = "lakehouse_assets"
REPOSITORY = "__repository__"
START_TIMEOUT = 240.0  # webserver up and the code location loaded (2 busy cores)
BIN = Path(sys.executable).parent
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LOCATION_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

RUNS_QUERY = """
query { runsOrError { __typename ... on Runs {
  results { runId status startTime endTime tags { key value } } } } }
"""

TICKS_QUERY = """
query Ticks($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { __typename
  ... on Sensor { sensorState { status ticks(limit: 50) {
    id status timestamp skipReason runIds error { message } logEvents { events { message } } } } } } }
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
    latest: executionForLatestMaterialization { status runId } } } } } }
"""

STEP_FAILURES_QUERY = """
query Failures($runId: ID!) { logsForRun(runId: $runId) { __typename
  ... on EventConnection { events { __typename
    ... on ExecutionStepFailureEvent { stepKey error { message } } } } } }
"""


@dataclass
class DagsterDev:
    port: int
    lakehouse_home: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def landing(self) -> Path:
        return self.lakehouse_home / "landing"

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient(HOST, port_number=self.port, timeout=60)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return self.client()._execute(query, variables)

    def log_tail(self) -> str:
        return log_tail(self.log, 80)

    def runs(self) -> list[dict]:
        """Every run of the instance, newest first."""
        data = self.graphql(RUNS_QUERY)["runsOrError"]
        assert data["__typename"] == "Runs", data
        return data["results"]

    def sensor_ticks(self, sensor: str) -> list[dict]:
        """The sensor's latest ticks, newest first."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                    "sensorName": sensor}  # fmt: skip
        data = self.graphql(TICKS_QUERY, {"selector": selector})["sensorOrError"]
        assert data["__typename"] == "Sensor", data
        return data["sensorState"]["ticks"]

    def sensor_log(self, sensor: str, since: float = 0.0) -> list[str]:
        """What the sensor logged (`context.log`) in its ticks after `since` (epoch seconds)."""
        ticks = [t for t in self.sensor_ticks(sensor) if t["timestamp"] > since]
        return [event["message"] for t in ticks for event in t["logEvents"]["events"]]

    def assets(self) -> dict[str, dict]:
        """Per asset: the run of its latest materialization, its metadata labels, and the status
        of each of its checks at that materialization."""
        states = {}
        for node in self.graphql(ASSETS_QUERY)["assetNodes"]:
            [latest] = node["assetMaterializations"] or [{"runId": None, "metadataEntries": []}]
            checks = node["assetChecksOrError"].get("checks", [])
            states["/".join(node["assetKey"]["path"])] = {
                "run_id": latest["runId"],
                "metadata": {e["label"] for e in latest["metadataEntries"]},
                "checks": {c["name"]: (c["latest"] or {}).get("status") for c in checks},
            }
        return states

    def step_failures(self, run_id: str) -> list[str]:
        data = self.graphql(STEP_FAILURES_QUERY, {"runId": run_id})["logsForRun"]
        failed = [e for e in data.get("events", []) if "stepKey" in e]  # only they have fields
        return [f"{e['stepKey']}: {e['error']['message']}" for e in failed]

    def wait_for_run(self, run_id: str, timeout: float) -> str:
        """Wait until `run_id` ends; its final status."""
        deadline, client = time.monotonic() + timeout, self.client()
        while (status := client.get_run_status(run_id).value) not in TERMINAL:
            assert self.process.poll() is None, f"dagster exited while waiting:\n{self.log_tail()}"
            late = f"run {run_id} still {status} after {timeout:.0f}s\n{self.log_tail()}"
            assert time.monotonic() < deadline, late
            time.sleep(1)
        return status


def _location_loaded(dev: DagsterDev) -> bool:
    """The webserver answers and the code location is LOADED (raises if it failed to load)."""
    if http_status(f"{dev.url}/server_info", timeout=5) != 200:
        return False
    entries = dev.graphql(LOCATION_QUERY)["workspaceOrError"].get("locationEntries", [])
    entry = next((e for e in entries if e["name"] == LOCATION), {"loadStatus": None})
    if entry["loadStatus"] != "LOADED":
        return False
    if (error := entry["locationOrLoadError"])["__typename"] == "PythonError":
        raise RuntimeError(f"code location failed to load: {error['message']}")
    return True


def _processes_with_env(entry: str) -> dict[int, str]:
    """The command lines of live processes whose environment has `entry` ("NAME=value"), by pid."""
    found = {}
    for pid, _ in live_pids():
        with contextlib.suppress(OSError):
            if entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                cmdline = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
                found[pid] = cmdline.replace("\0", " ")[:200]
    return found


def user_env(tmp_dir: Path) -> dict[str, str]:
    """The environment of a user in `tmp_dir`: DAGSTER_HOME is a copy of the shipped
    `dagster_home/` (as the README points at it), LAKEHOUSE_HOME is `tmp_dir/lakehouse`."""
    dagster_home = tmp_dir / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHIPPED_INSTANCE_YAML, dagster_home / "dagster.yaml")
    return clean_env(
        DAGSTER_HOME=str(dagster_home),
        LAKEHOUSE_HOME=str(tmp_dir / "lakehouse"),
        LAKEHOUSE_SENSOR_INTERVAL_SECONDS="5",
        PYTHONUNBUFFERED="1",
    )


def quickstart_run(tmp_dir: Path) -> subprocess.CompletedProcess:
    """The README's main command (`dagster asset materialize -m lakehouse_assets --select '*'`
    with DAGSTER_HOME at the shipped instance settings), in `tmp_dir`."""
    cmd = [str(BIN / "dagster"), "asset", "materialize",
           "-m", "lakehouse_assets", "--select", "*"]  # fmt: skip
    return subprocess.run(
        cmd, cwd=tmp_dir, env=user_env(tmp_dir), capture_output=True, text=True, timeout=600
    )


@contextlib.contextmanager
def dagster_dev(tmp_dir: Path, program=("dagster", "dev")) -> Iterator[DagsterDev]:
    """Run `dagster dev -w workspace.yaml` (or `program`, e.g. `("dagster-webserver",)`) on a free
    loopback port, with the shipped instance settings in `tmp_dir/dagster_home`; yield it once the
    code location has loaded. On exit (also on failure) its process group is stopped, and any
    process that still has this DAGSTER_HOME in its environment is killed and reported."""
    name, env = " ".join(program), user_env(tmp_dir)
    dev = DagsterDev(free_port(), Path(env["LAKEHOUSE_HOME"]), tmp_dir / f"{'-'.join(program)}.log")
    cmd = [str(BIN / program[0]), *program[1:],
           "-w", str(WORKSPACE_YAML), "-h", HOST, "-p", str(dev.port)]  # fmt: skip
    try:  # SIGTERM, then up to 20 s: dagster dev stops its webserver, daemon and code server
        with server_process(name, cmd, dev.log, lambda: _location_loaded(dev), START_TIMEOUT,
                            grace=20, cwd=tmp_dir, env=env) as dev.process:  # fmt: skip
            yield dev
    finally:
        # A process that left the group (setsid) but runs for this instance: kill it too.
        leftovers = _processes_with_env(f"DAGSTER_HOME={env['DAGSTER_HOME']}")
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"processes outlived {name}'s process group: {leftovers}"


def wait_until_sensor_idle(dev: DagsterDev, timeout: float) -> None:
    """Until every run has ended and the sensor's two newest ticks, both after the last end,
    found nothing to do. (An earlier tick after the end may have waited for a file to settle.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = dev.runs()
        if all(r["status"] in TERMINAL for r in runs):
            last_end = max((r["endTime"] or 0 for r in runs), default=0)
            later = [t for t in dev.sensor_ticks(LANDING_SENSOR) if t["timestamp"] > last_end]
            failed = [t for t in later if t["status"] == "FAILURE"]
            assert not failed, f"sensor tick failed: {failed[0]['error']}"
            newest = later[:2]  # ticks come newest first
            quiet = [t for t in newest if (t["skipReason"] or "").startswith("No new or changed")]
            if len(quiet) == 2:
                return
        time.sleep(2)
    raise AssertionError(f"sensor not idle after {timeout:.0f}s: {dev.runs()}\n{dev.log_tail()}")
