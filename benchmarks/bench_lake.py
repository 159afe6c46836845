"""How the lake grows: a full build, then a day's file and a refresh per day, with and without
weekly maintenance; Parquet files, bytes and snapshots after each day.

`python -m benchmarks.bench_lake --events 1000000 --days 30` (docs/benchmark.md). The runs
are in process (`dg.materialize`), in a fresh `LAKEHOUSE_HOME` per arm under `--work`.
"""

import argparse
import os
import shutil
import time
from pathlib import Path

import dagster as dg

MAINTAIN_EVERY_DAYS = 7


def lake_files(home: Path) -> tuple[int, int]:
    """Parquet files under the lake's data folder, and their bytes."""
    files = list((home / "lake").rglob("*.parquet"))
    return len(files), sum(f.stat().st_size for f in files)


def snapshots(home: Path) -> int:
    from lakehouse_assets.lib import lake

    location = lake.LakeLocation(f"sqlite:{home / 'catalog.sqlite'}", f"{home / 'lake'}/")
    with lake.cursor(location, read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM lake.snapshots()").fetchone()[0]


def run_arm(work: Path, events: int, days: int, maintain: bool, samples: Path) -> list[dict]:
    """Build, then `days` daily refreshes (maintenance every `MAINTAIN_EVERY_DAYS` with
    `maintain`); a row of sizes per day (day 0: the full build)."""
    from benchmarks import bench
    from lakehouse_assets import defs
    from lakehouse_assets.lib import lake
    from lakehouse_assets.lib.profiles import build_resources

    home = work / ("maintained" if maintain else "unmaintained")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ["LAKEHOUSE_HOME"] = str(home)
    customers = max(1, events // 10)
    bench.write_sample(home / "landing", events, customers, samples)
    maintenance = defs.get_job_def("lakehouse_maintenance")
    rows = []
    with dg.instance_for_test() as instance:
        for day in range(days + 1):
            if day:
                bench.write_refresh_file(
                    home / "landing", customers, seed=100 + day, day=day, name=f"day_{day:02d}.parquet"
                )  # fmt: skip
            started = time.perf_counter()
            result = dg.materialize(
                [*defs.assets, *defs.asset_checks],
                resources=build_resources(),
                instance=instance,
                raise_on_error=False,
            )
            seconds = time.perf_counter() - started
            if not result.success:
                raise SystemExit(f"day {day}: the run failed (LAKEHOUSE_HOME {home})")
            maintained = maintain and day and day % MAINTAIN_EVERY_DAYS == 0
            if maintained:
                maintenance.execute_in_process(
                    instance=instance,
                    resources=build_resources(),
                    run_config={"ops": {"maintain_lake": {"config": {"keep_days": 0}}}},
                )
            files, size = lake_files(home)
            rows.append(
                {
                    "day": day,
                    "files": files,
                    "mb": size / 1e6,
                    "snapshots": snapshots(home),
                    "seconds": seconds,
                    "maintained": bool(maintained),
                }
            )
            print(
                f"  {'maintained' if maintain else 'unmaintained'} day {day:2d}: {files:5d} files, "
                f"{size / 1e6:8.1f} MB, {rows[-1]['snapshots']:4d} snapshots, run {seconds:5.1f} s"
                + (" (maintenance after it)" if maintained else ""),
                flush=True,
            )
    lake.close_all()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--work", type=Path, default=Path(".lakehouse-bench-lake"))
    args = parser.parse_args()
    work = args.work.absolute()
    samples = work / "samples"
    arms = {m: run_arm(work, args.events, args.days, m, samples) for m in (False, True)}
    print(
        "\n| day | files | MB | snapshots | files, maintained | MB, maintained | snapshots, maintained |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for plain, kept in zip(arms[False], arms[True], strict=True):
        print(
            f"| {plain['day']} | {plain['files']:,} | {plain['mb']:,.1f} | {plain['snapshots']:,} "
            f"| {kept['files']:,} | {kept['mb']:,.1f} | {kept['snapshots']:,} |"
        )


if __name__ == "__main__":
    main()
