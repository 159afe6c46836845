"""Draw the README's realized-performance plot: CDNOW landed month by month, the whole graph
run after each month, then `churn_scores_outcomes`' plot of every scoring judged.

    python -m benchmarks.realized_plot --out docs/images/realized_roc_auc.png
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.bench import CLEARED_ENV
from benchmarks.drift_landings import cdnow_csv

FIRST_MONTH = "1997-10-01"  # nine months of history before the first scoring
NO_SEED = "ops:\n  raw_transactions:\n    config:\n      seed_sample_if_empty: false\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="realized-"))
    home, landing = work / "home", work / "home" / "landing"
    landing.mkdir(parents=True)
    (work / "dagster_home").mkdir()
    (work / "no_seed.yaml").write_text(NO_SEED)
    rows = pd.read_csv(cdnow_csv(work / "cdnow.csv"), dtype=str)
    month = pd.to_datetime(rows["event_time"]).dt.to_period("M")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env |= {"LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(work / "dagster_home")}
    rows[month < pd.Period(FIRST_MONTH, "M")].to_csv(landing / "cdnow_history.csv", index=False)
    for period in pd.period_range(FIRST_MONTH, "1998-06", freq="M"):
        rows[month == period].to_csv(landing / f"cdnow_{period}.csv", index=False)
        command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m",
                   "lakehouse_assets", "--select", "*", "-c", str(work / "no_seed.yaml")]  # fmt: skip
        with (work / "runs.log").open("a") as log:
            if subprocess.run(command, env=env, stdout=log, stderr=log).returncode != 0:
                raise SystemExit(f"the run after {period} failed; see {log.name}")
        print(f"landed up to {period}", flush=True)

    import lakehouse_assets
    from lakehouse_assets.lib.model.outcomes import realized, realized_roc_auc_plot

    conn = lakehouse_assets.connect(f"sqlite:{home / 'catalog.sqlite'}", str(home / "lake") + "/")
    scorings = realized(conn, 90)
    for s in scorings:
        print(s.features_as_of, s.model_version, s.evaluation_roc_auc, s.roc_auc, s.brier)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(realized_roc_auc_plot(scorings))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
