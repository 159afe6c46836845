"""Benchmark of the fan-out by customer bucket (docs/deployment.md, "Several workers").

    python -m benchmarks.bench_fanout --events 10000000 --buckets 1 4 --rounds 2
    python -m benchmarks.bench_fanout --events 10000000 --celery-workers 1 2

In process: the whole graph (the README's command, in-process executor) in a fresh
LAKEHOUSE_HOME for each bucket count, the counts alternating over `--rounds`. Reports the wall
and the time of each asset (its plan, bucket and commit steps summed); the target is at most 15%
more wall with 4 buckets than with 1.

On Celery: the data steps up to the features, with 4 buckets (`--celery-buckets`), on 1 and then 2
Celery workers (concurrency 1 each), the lake on PostgreSQL and SeaweedFS and the broker on
Redis, all on loopback (the test support's servers). Reports each bucketed asset's wall
(first step start to last step end) and its bucket steps' times, for the model in
docs/benchmark.md.
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench import CLEARED_ENV, run_measured, write_sample

BUCKETED = (
    "silver_transactions",
    "gold_customer_summary",
    "customer_features",
    "scoring_features",
    "churn_scores",
)
TARGET_OVERHEAD = 1.15  # wall with 4 buckets / wall with 1, in process
UP_TO_FEATURES = "raw_transactions,bronze_transactions,silver_transactions,gold_customer_summary,customer_features,scoring_features"


def step_intervals(dagster_home: Path) -> dict[str, tuple[float, float]]:
    """(start, end) of every step of the latest run in `dagster_home`'s instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_runs(limit=1)[0]
        stats = instance.get_run_step_stats(run.run_id)
    return {s.step_key: (s.start_time, s.end_time) for s in stats if s.end_time and s.start_time}


def per_asset(intervals: dict[str, tuple[float, float]]) -> dict[str, dict]:
    """Per asset: its steps' summed seconds, its wall (first start to last end), and for a
    bucketed asset its bucket steps' seconds."""
    assets: dict[str, dict] = {}
    for key, (start, end) in intervals.items():
        asset = key.split(".")[0]
        entry = assets.setdefault(
            asset, {"seconds": 0.0, "start": start, "end": end, "buckets": []}
        )
        entry["seconds"] += end - start
        entry["start"], entry["end"] = min(entry["start"], start), max(entry["end"], end)
        if ".bucket_of_" in key:
            entry["buckets"].append(round(end - start, 2))
    return {
        name: {
            "seconds": round(e["seconds"], 2),
            "wall": round(e["end"] - e["start"], 2),
            "buckets": sorted(e["buckets"]),
        }  # fmt: skip
        for name, e in assets.items()
    }


def fresh_home(work: Path, name: str, landing_files: list[Path]) -> Path:
    home = work / name
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (home / "landing").mkdir()
    for path in landing_files:
        os.link(path, home / "landing" / path.name)
    return home


def in_process(
    work: Path, files: list[Path], buckets: list[int], rounds: int, before: Path | None
) -> dict:
    """The whole graph per bucket count (and with the code in `before`, labelled `before`),
    alternating; the wall and per-asset times of each run."""
    variants: list[int | str] = [*(["before"] if before else []), *buckets]
    runs: dict[int | str, list[dict]] = {n: [] for n in variants}
    for round_ in range(rounds):
        for n in variants:
            home = fresh_home(work, f"buckets_{n}", files)
            env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
            env |= {"LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
            if n == "before":
                env["PYTHONPATH"] = str(before)
            else:
                env["LAKEHOUSE_BUCKETS"] = str(n)
            command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m",
                       "lakehouse_assets", "--select", "*"]  # fmt: skip
            wall, cpu, rss, error = run_measured(command, env, home / "materialize.log")
            if error:
                raise SystemExit(error)
            assets = per_asset(step_intervals(home / "dagster_home"))
            runs[n].append({"wall": round(wall, 2), "cpu": round(cpu, 2), "assets": assets})
            print(f"  round {round_ + 1}, {n}: wall {wall:.1f} s, CPU {cpu:.1f} s; "
                  + ", ".join(f"{a} {assets[a]['seconds']:.1f} s" for a in BUCKETED), flush=True)  # fmt: skip
    return {str(n): r for n, r in runs.items()}  # JSON keys: "before", "1", "4"


def on_celery(work: Path, files: list[Path], workers_list: list[int], buckets: int) -> dict:
    """The data steps up to the features on 1..W Celery workers, lake on PostgreSQL + SeaweedFS."""
    from lakehouse_assets_tests.support.processes import clean_env, run_command
    from lakehouse_assets_tests.support.seaweedfs import seaweedfs_s3
    from lakehouse_assets_tests.support.services import (
        celery_worker,
        dagster_home,
        dagster_pg_env,
        postgres_server,
        redis_server,
    )

    results = {}
    for workers in workers_list:
        root = work / f"celery_{workers}"
        shutil.rmtree(root, ignore_errors=True)
        landing = root / "landing"
        landing.mkdir(parents=True)
        for path in files:
            os.link(path, landing / path.name)
        with (
            postgres_server(root / "pg") as pg,
            seaweedfs_s3(root / "seaweedfs", bucket="lake") as s3,
            redis_server(root / "redis") as broker,
        ):
            pg.create_database("lake")
            home = dagster_home(root / "dagster_home", pg)
            env = clean_env(
                **s3.env(), **dagster_pg_env(pg), DAGSTER_HOME=str(home), LAKEHOUSE_ENV="prod",
                LAKEHOUSE_HOME=str(root / "home"),
                LAKEHOUSE_CATALOG=f"postgres:dbname=lake host={pg.host} port={pg.port} "
                f"user={pg.user} password={pg.password}",
                LAKEHOUSE_DATA_PATH="s3://lake/lakehouse/", LAKEHOUSE_LANDING_DIR=str(landing),
                LAKEHOUSE_BUCKETS=str(buckets), LAKEHOUSE_MODEL_SIGNING_KEY=os.urandom(16).hex(),
                MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
                DAGSTER_CELERY_BROKER_URL=broker, DAGSTER_CELERY_BACKEND_URL=broker,
            )  # fmt: skip
            with contextlib.ExitStack() as stack:
                for i in range(workers):
                    stack.enter_context(celery_worker(f"worker-{i}", env, root))
                command = ["dagster", "asset", "materialize", "-m",
                           "lakehouse_assets.deploy.celery_location", "--select", UP_TO_FEATURES]  # fmt: skip
                started = time.perf_counter()
                code = run_command(command, env, root / "materialize.log", 3600, cwd=root)
                wall = time.perf_counter() - started
                if code != 0:
                    raise SystemExit(f"the Celery run failed; see {root / 'materialize.log'}")
            previous = {k: os.environ.get(k) for k in dagster_pg_env(pg)}
            os.environ.update(dagster_pg_env(pg))
            try:
                assets = per_asset(step_intervals(home))
            finally:
                for k, v in previous.items():
                    os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        results[str(workers)] = {"wall": round(wall, 2), "assets": assets}
        print(f"  {workers} Celery worker(s): wall {wall:.1f} s; "
              + ", ".join(f"{a} {assets[a]['wall']:.1f} s (buckets {assets[a]['buckets']})"
                          for a in BUCKETED if a in assets), flush=True)  # fmt: skip
    return results


def summary(result: dict) -> list[str]:
    lines = []
    runs = result.get("in_process", {})
    if runs:
        medians = {n: statistics.median(r["wall"] for r in rs) for n, rs in runs.items()}
        lines.append("In process, whole graph (median wall): " + ", ".join(
            f"{n}: {w:.1f} s" for n, w in medians.items()))  # fmt: skip
        if "1" in medians and "4" in medians:
            ratio = medians["4"] / medians["1"]
            met = "met" if ratio <= TARGET_OVERHEAD else "MISSED"
            lines.append(
                f"4 buckets / 1 bucket: {ratio:.2f}x (target <= {TARGET_OVERHEAD}x: {met})"
            )
        for asset in BUCKETED:
            per_n = {
                n: statistics.median(r["assets"][asset]["seconds"] for r in rs)
                for n, rs in runs.items()
            }
            lines.append(
                f"  {asset}: " + ", ".join(f"{n} bucket(s) {s:.1f} s" for n, s in per_n.items())
            )
    for workers, run in result.get("celery", {}).items():
        lines.append(f"Celery, {workers} worker(s): wall {run['wall']:.1f} s")
        for asset, entry in run["assets"].items():
            lines.append(f"  {asset}: wall {entry['wall']:.1f} s, steps {entry['seconds']:.1f} s"
                         + (f", buckets {entry['buckets']}" if entry["buckets"] else ""))  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--buckets", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--before", type=Path, default=None,
        help="also run the graph with this checkout's code first (PYTHONPATH), e.g. a worktree "
        "of the commit before the fan-out",
    )  # fmt: skip
    parser.add_argument("--celery-workers", type=int, nargs="*", default=[])
    parser.add_argument("--celery-buckets", type=int, default=4)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "lakehouse-bench-fanout"
    )
    parser.add_argument(
        "--samples", type=Path, default=Path(tempfile.gettempdir()) / "lakehouse-samples"
    )
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    landing = args.work / "sample"
    shutil.rmtree(landing, ignore_errors=True)
    write_sample(landing, args.events, max(1, args.events // 10), args.samples)
    files = sorted(landing.glob("*.parquet"))
    result: dict = {"events": args.events, "command": "python -m benchmarks.bench_fanout "
                    + " ".join(argv or sys.argv[1:])}  # fmt: skip
    if args.buckets:
        result["in_process"] = in_process(args.work, files, args.buckets, args.rounds, args.before)
    if args.celery_workers:
        result["celery"] = on_celery(args.work, files, args.celery_workers, args.celery_buckets)
    out = args.work / "fanout.json"
    out.write_text(json.dumps(result, indent=1))
    print("\n" + "\n".join(summary(result)) + f"\n\nFigures written to {out}")


if __name__ == "__main__":
    main()
