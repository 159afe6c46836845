"""The GitHub workflow for users (.github/workflows/ci.yml): actionlint accepts it, it runs the
README's commands, and its last step fails when a blocking asset check fails."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from lakehouse_assets_tests.support.processes import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
ACTIONLINT = Path(sys.executable).parent / "actionlint"

README_INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
README_MAIN_COMMAND = (
    "DAGSTER_HOME=$PWD/dagster_home .venv/bin/dagster asset materialize -m lakehouse_assets "
    "--select '*'"
)


def actionlint(path: Path) -> subprocess.CompletedProcess:
    # `-shellcheck=` and `-pyflakes=` turn off the optional integrations, so the result does not
    # depend on whether those tools happen to be installed.
    return subprocess.run(
        [str(ACTIONLINT), "-shellcheck=", "-pyflakes=", "-no-color", "-oneline", str(path)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip


def test_actionlint_accepts_the_workflow():
    completed = actionlint(WORKFLOW)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_actionlint_rejects_a_broken_copy(tmp_path):
    """The linter really checks: a misspelled input of setup-python is reported."""
    broken = tmp_path / "ci.yml"
    text = WORKFLOW.read_text()
    assert "python-version:" in text
    broken.write_text(text.replace("python-version:", "python_version:"))
    completed = actionlint(broken)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert 'input "python_version" is not defined' in completed.stdout


def test_workflow_runs_the_readme_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    assert README_INSTALL in readme and README_MAIN_COMMAND in readme
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]["steps"]
    runs = [step["run"].strip() for step in steps if "run" in step]
    assert README_INSTALL in runs
    assert any(run.startswith(".venv/bin/python -m pytest") for run in runs)
    # The materialization comes last, after the tests.
    assert runs[-1] == README_MAIN_COMMAND


def test_main_command_fails_when_a_blocking_check_fails(tmp_path):
    """What the workflow's last step relies on: a landing whose every row is rejected leaves
    silver empty, the blocking checks `silver_not_empty` and `silver_landed_files_have_valid_rows`
    fail, and the command exits 1."""
    landing = tmp_path / "lakehouse" / "landing"
    landing.mkdir(parents=True)
    (landing / "bad.csv").write_text(
        "customer_id,event_time,amount\nc1,2025-01-31,-5\nc2,2025-02-01,abc\n"
    )
    run_config = tmp_path / "run_config.yaml"
    run_config.write_text(
        yaml.safe_dump({"ops": {"raw_transactions": {"config": {"seed_sample_if_empty": False}}}})
    )
    cleared = (
        "DAGSTER_HOME",
        "LAKEHOUSE_LANDING_DIR",
        "LAKEHOUSE_DUCKDB_PATH",
        "LAKEHOUSE_CATALOG",
        "LAKEHOUSE_DATA_PATH",
        "MLFLOW_TRACKING_URI",
    )
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env["LAKEHOUSE_HOME"] = str(tmp_path / "lakehouse")
    # The README's command as the shell splits it, with this interpreter's `dagster` (and a
    # throw-away instance rather than the shipped one).
    _, _, *arguments = shlex.split(README_MAIN_COMMAND)
    dagster = Path(sys.executable).parent / "dagster"
    completed = subprocess.run(
        [str(dagster), *arguments, "-c", str(run_config)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "Asset check 'silver_not_empty' on 'silver_transactions' did not pass" in output
    (steps_failed,) = [line for line in output.splitlines() if "Steps failed:" in line]
    assert "'silver_transactions_silver_not_empty'" in steps_failed, steps_failed
    assert "'silver_transactions_silver_landed_files_have_valid_rows'" in steps_failed, steps_failed
