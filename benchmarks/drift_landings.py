"""The drift check on four landings (docs/model-quality.md, "Drift"): the README's sample and
CDNOW, each as landed and with the amounts of its last 90 days multiplied by 5.

    python -m benchmarks.drift_landings [--work /tmp/drift]

Each landing gets its own LAKEHOUSE_HOME, built up to the two feature tables with
`dagster asset materialize`. Prints, per landing, the share of scoring customers matched on
tenure and the features over the warning threshold, with their PSI.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

from benchmarks.bench import CLEARED_ENV

SELECTION = "*customer_features,*scoring_features"
# The amounts of the last 90 days before the latest valid event, times 5 (text columns: the
# sample's invalid rows stay as they are).
TIMES_FIVE = """
COPY (
    WITH parsed AS (SELECT *, try_cast(event_time AS TIMESTAMP) AS parsed_at FROM read_csv_auto($src, all_varchar = true))
    SELECT * EXCLUDE (parsed_at) REPLACE (
        CASE WHEN parsed_at > (SELECT max(parsed_at) FROM parsed WHERE parsed_at <= now()) - INTERVAL 90 DAY
             AND parsed_at <= now() AND try_cast(amount AS DOUBLE) IS NOT NULL
        THEN CAST(round(try_cast(amount AS DOUBLE) * 5, 2) AS VARCHAR) ELSE amount END AS amount)
    FROM parsed
) TO '{out}' (HEADER)
"""


def cdnow_csv(path: Path) -> Path:
    from lakehouse_assets_tests.integration.test_real_log import write_cdnow_csv

    write_cdnow_csv(path)
    return path


def sample_csv(path: Path) -> Path:
    from lakehouse_assets.lib.sample import write_sample

    write_sample(path.parent)
    (parquet,) = path.parent.glob("*.parquet")
    duckdb.sql(f"COPY (SELECT * FROM '{parquet}') TO '{path}' (HEADER)")
    parquet.unlink()
    return path


def build(home: Path, source: Path, times_five: bool) -> None:
    landing = home / "landing"
    landing.mkdir(parents=True)
    target = landing / source.name
    if times_five:
        duckdb.execute(TIMES_FIVE.format(out=target), {"src": str(source)})
    else:
        target.write_bytes(source.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env |= {"LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    (home / "dagster_home").mkdir()
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "lakehouse_assets",
               "--select", SELECTION]  # fmt: skip
    with (home / "build.log").open("w") as log:
        if subprocess.run(command, env=env, stdout=log, stderr=log).returncode != 0:
            raise SystemExit(f"building {home} failed; see {log.name}")


def drift_of(home: Path) -> str:
    import lakehouse_assets
    from lakehouse_assets.lib.model.drift import MATCHED_ON, compare, sample_features

    conn = lakehouse_assets.connect(f"sqlite:{home / 'catalog.sqlite'}", str(home / "lake") + "/")
    drift = compare(
        sample_features(conn, "gold.customer_features"),
        sample_features(conn, "gold.scoring_features"),
    )
    conn.close()
    named = sorted(drift.drifted.items(), key=lambda kv: -kv[1])
    largest = max(v for c, v in drift.psi.items() if c != MATCHED_ON)
    return (
        f"matched {drift.matched_share:.0%} ({'at matching tenures' if drift.matched else 'as they are'}), "
        f"largest PSI {largest:.2f}; warns: "
        + (", ".join(f"{c} {v:.2f}" for c, v in named) or "nothing")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="drift-"))
    sources = work / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    landings = {
        "sample": sample_csv(sources / "sample.csv"),
        "cdnow": cdnow_csv(sources / "cdnow.csv"),
    }
    for name, source in landings.items():
        for times_five in (False, True):
            label = f"{name}{' x5' if times_five else ''}"
            home = work / label.replace(" ", "_")
            build(home, source, times_five)
            print(f"{label}: {drift_of(home)}", flush=True)


if __name__ == "__main__":
    main()
