"""The `dg` CLI finds the code location through `[tool.dg]` in pyproject.toml, from the repository
root: the assets, checks, jobs and sensors of `lakehouse_assets/defs/`, with the resources."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lakehouse_assets import defs
from lakehouse_assets_tests.support.helpers import ASSET_NAMES
from lakehouse_assets_tests.support.processes import REPO_ROOT

DG = Path(sys.executable).parent / "dg"

ASSETS = set(ASSET_NAMES)


def run_dg(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # As after `. .venv/bin/activate`: dg warns when the active environment is not the project's.
    env["VIRTUAL_ENV"] = sys.prefix
    env["LAKEHOUSE_HOME"] = str(tmp_path / "lakehouse")
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [str(DG), *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300
    )


def test_dg_check_defs(tmp_path):
    completed = run_dg("check", "defs", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "All definitions loaded successfully." in completed.stdout


def test_dg_list_defs(tmp_path):
    completed = run_dg("list", "defs", "--json", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    listed = json.loads(completed.stdout)

    assets = {"/".join(asset["asset_key_parts"]) for asset in listed["assets"]}
    assert assets == ASSETS
    checks = {check["key"] for check in listed["asset_checks"]}
    expected_checks = {
        f"{key.asset_key.to_user_string()}:{key.name}"
        for key in defs.resolve_asset_graph().asset_check_keys
    }
    assert "silver_transactions:silver_conserves_bronze_rows" in checks
    assert checks == expected_checks
    assert {job["name"] for job in listed["jobs"]} == {"refresh_lakehouse", "lakehouse_maintenance"}
    assert {sensor["name"] for sensor in listed["sensors"]} == {
        "landing_sensor",
        "mlflow_run_failure_sensor",
    }
    assert {resource["name"] for resource in listed["resources"]} == {
        "duckdb",
        "landing",
        "mlflow",
        "run_report",
    }


def test_the_package_loads_without_the_project_around_it(tmp_path):
    """As installed from a wheel: the package alone, no pyproject.toml above it, still loads
    every definition of its defs folder."""
    shutil.copytree(
        REPO_ROOT / "lakehouse_assets",
        tmp_path / "site" / "lakehouse_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    probe = (
        "import lakehouse_assets as la; g = la.defs.resolve_asset_graph(); "
        "print(la.__file__, len(g.get_all_asset_keys()), len(g.asset_check_keys))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    env["LAKEHOUSE_HOME"] = str(tmp_path / "lakehouse")
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert completed.returncode == 0, completed.stderr
    path, assets, checks = completed.stdout.split()
    assert path == str(tmp_path / "site" / "lakehouse_assets" / "__init__.py")
    assert (int(assets), int(checks)) == (
        len(ASSETS),
        len(defs.resolve_asset_graph().asset_check_keys),
    )
    assert "Warning" not in completed.stderr, completed.stderr
