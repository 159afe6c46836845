"""The model steps' cheaper ways to the same results: each against the way it replaced, on the
same input, to the bit (or to the PNG byte)."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.model import drift, plots
from lakehouse_assets.lib.model.dataset import feature_frame, md5_lower_64
from lakehouse_assets.lib.model.estimators import logistic_regression
from lakehouse_assets.lib.model.metrics import probability_metrics, ranking_metrics
from lakehouse_assets.lib.model.scoring import churn_probability

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEGER_FEATURES = {"frequency", "active_days", "quantity_total", "txn_last_30d"}


def _features(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Feature columns as DuckDB returns them: BIGINT counts as int64, the rest float64."""
    rng = np.random.default_rng(seed)
    return {
        c: rng.integers(0, 50, rows) if c in INTEGER_FEATURES else rng.lognormal(2, 1, rows)
        for c in FEATURE_COLUMNS
    }


def test_the_split_hash_is_duckdbs_md5_number_lower():
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE ids AS SELECT 'C' || lpad(i::VARCHAR, 8, '0') || s AS id "
        "FROM range(20000) r(i), (VALUES (''), ('/42'), ('/sample/7'), (' é/0')) v(s)"
    )
    differ, rows = conn.execute(
        f"SELECT count(*) FILTER (WHERE md5_number_lower(id) IS DISTINCT FROM "
        f"{md5_lower_64('id')}), count(*) FROM ids"
    ).fetchone()
    assert rows == 80_000 and differ == 0


def test_the_drift_sample_depends_on_the_content_not_the_row_order(monkeypatch):
    monkeypatch.setattr(drift, "SAMPLE_ROWS", 3_000)
    conn = duckdb.connect()
    frame = pd.DataFrame(_features(50_000))
    frame.insert(0, "customer_id", [f"C{i:08d}" for i in range(len(frame))])
    conn.register("frame", frame)
    conn.execute("CREATE TABLE features AS SELECT * FROM frame")
    conn.execute("CREATE TABLE shuffled AS SELECT * FROM frame ORDER BY random()")
    sample, again = drift.sample_features(conn, "features"), drift.sample_features(conn, "shuffled")
    for c in FEATURE_COLUMNS:  # the same rows; PSI does not depend on their order
        assert len(sample[c]) == 3_000
        assert np.array_equal(np.sort(sample[c]), np.sort(again[c])), c


def test_scoring_frames_without_a_copy_score_the_same():
    model = logistic_regression(1.0, 42).fit(
        feature_frame(_features(2_000, seed=1)), np.random.default_rng(2).integers(0, 2, 2_000)
    )
    columns = _features(30_000, seed=3)
    copied = churn_probability(model, feature_frame(columns))
    assert np.array_equal(churn_probability(model, feature_frame(columns, copy=False)), copied)


def test_curves_labelled_with_known_metrics_are_the_same_pictures():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 5_000)
    scores = {
        "model": np.clip(y * 0.3 + rng.random(5_000) * 0.7, 0, 1),
        "recency rule": rng.random(5_000) * 90,
    }
    known = {"model": probability_metrics(y, scores["model"]),
             "recency rule": ranking_metrics(y, scores["recency rule"])}  # fmt: skip
    assert plots.roc_curves(y, scores, known) == plots.roc_curves(y, scores)
    assert plots.precision_recall_curves(y, scores, known) == plots.precision_recall_curves(
        y, scores
    )


IMPORT_PROBE = """
import os, sys
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and "seen" not in os.environ:
            os.environ["seen"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset")
        return None
sys.meta_path.insert(0, Probe())
import lakehouse_assets
print(os.environ["seen"], os.environ["OPENBLAS_THREAD_TIMEOUT"])
"""


def test_openblas_threads_sleep_when_idle_unless_the_environment_says_otherwise():
    env = {k: v for k, v in os.environ.items() if k != settings.OPENBLAS_TIMEOUT_ENV}
    env["PYTHONPATH"] = str(REPO_ROOT)
    # Set before numpy (and OpenBLAS, which reads it once) is first imported.
    assert _timeout_when_numpy_loads(env) == ["4", "4"]
    assert _timeout_when_numpy_loads(env | {settings.OPENBLAS_TIMEOUT_ENV: "28"}) == ["28", "28"]


def _timeout_when_numpy_loads(env: dict) -> list[str]:
    """OPENBLAS_THREAD_TIMEOUT when `import lakehouse_assets` first imports numpy, and after."""
    probe = [sys.executable, "-c", IMPORT_PROBE]
    return subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.split()


EXIT_PROBE = """
import sys
command, flag = sys.argv[1:]
sys.argv[0] = command  # the process this one stands for
import lakehouse_assets

class Flag:
    def __del__(self, open=open, flag=flag):  # bound now: at exit the globals may be gone
        with open(flag, "w") as out:
            out.write("finalized")

flag_at_exit = Flag()
"""


def test_only_dagsters_processes_skip_the_final_collections(tmp_path):
    """A script that imports the package keeps Python's exit as it is (its globals are
    finalized); `dagster ...` and `python -m dagster ...` freeze them instead."""
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    commands = {
        "a script": "report.py",
        "dagster": str(Path(sys.executable).parent / "dagster"),
        "python -m dagster": str(Path(np.__file__).parents[1] / "dagster" / "__main__.py"),
    }
    finalized = {}
    for name, command in commands.items():
        flag = tmp_path / f"{name}.txt"
        subprocess.run([sys.executable, "-c", EXIT_PROBE, command, str(flag)], env=env, check=True)
        finalized[name] = flag.exists()
    assert finalized == {"a script": True, "dagster": False, "python -m dagster": False}
