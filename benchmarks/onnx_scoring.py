"""`churn_scores` with onnxruntime on the ONNX model against scikit-learn on the pickle, in one
run on one lakehouse: the whole graph once (10M transactions, about 1M customers), then
`churn_scores` alone, alternating the runtime, `--repeats` times each.

    python -m benchmarks.onnx_scoring [--events 10000000] [--repeats 3]

The pickle runs take the asset's own fallback path (a champion without an ONNX model), reached
here by hiding the champion's ONNX tags. Reported: the asset's wall time, the seconds spent in
the scoring loop, and the largest difference between the two runtimes' probabilities.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench import CLEARED_ENV, MAIN_COMMAND, run_measured, write_sample

RUNTIMES = ("onnx", "pickle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--samples", type=Path, default=Path("/tmp/lakehouse-samples"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="onnx-scoring-"))
    home = work / "home"
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    write_sample(home / "landing", args.events, max(1, args.events // 10), args.samples)
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env |= {"LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(work / "dagster_home")}
    wall, _, peak, error = run_measured([sys.executable, *MAIN_COMMAND], env, work / "build.log")
    if error:
        raise SystemExit(f"the whole graph failed: {error}")
    print(f"whole graph: {wall:.1f} s, peak RSS {peak:,.0f} MB", flush=True)
    os.environ.clear()
    os.environ.update(env)
    runs = {runtime: [] for runtime in RUNTIMES}
    probabilities = {}
    for repeat in range(args.repeats):
        for runtime in RUNTIMES if repeat % 2 == 0 else RUNTIMES[::-1]:
            figures, probabilities[runtime] = score_once(runtime)
            runs[runtime].append(figures)
            print(
                f"  {runtime}: asset {figures[0]:.2f} s, scoring loop {figures[1]:.2f} s",
                flush=True,
            )
    report(runs, probabilities, args.events)


def score_once(runtime: str) -> tuple[tuple[float, float], object]:
    """Materialize churn_scores with `runtime`; (asset seconds, scoring-loop seconds) and the
    probabilities by customer."""
    import dagster as dg

    import lakehouse_assets
    from lakehouse_assets import defs
    from lakehouse_assets.defs.model import churn_scores
    from lakehouse_assets.lib.profiles import build_resources

    loop_seconds = []
    score_in_batches, require_champion = (
        churn_scores._score_in_batches,
        churn_scores.require_champion,
    )

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return score_in_batches(*args, **kwargs)
        finally:
            loop_seconds.append(time.perf_counter() - started)

    def without_onnx(*args, **kwargs):
        champion = require_champion(*args, **kwargs)
        return dataclasses.replace(champion, onnx_sha256=None, onnx=None)  # as if from before

    churn_scores._score_in_batches = timed
    if runtime == "pickle":
        churn_scores.require_champion = without_onnx
    try:
        started = time.perf_counter()
        result = dg.materialize(
            [*defs.assets],
            selection=dg.AssetSelection.assets("churn_scores"),
            resources=build_resources(),
            instance=dg.DagsterInstance.get(),
        )
        seconds = time.perf_counter() - started
    finally:
        churn_scores._score_in_batches, churn_scores.require_champion = (
            score_in_batches,
            require_champion,
        )
    scored_by = result.asset_materializations_for_node("churn_scores")[0].metadata["scored_by"]
    expected = "onnxruntime" if runtime == "onnx" else "scikit-learn"
    assert scored_by.value.startswith(expected), scored_by.value
    conn = lakehouse_assets.connect()
    frame = conn.sql("SELECT customer_id, churn_probability FROM gold.churn_scores").df()
    conn.close()
    return (seconds, sum(loop_seconds)), frame.set_index("customer_id")["churn_probability"]


def report(runs: dict, probabilities: dict, events: int) -> None:
    onnx, pickle = (probabilities[r] for r in RUNTIMES)
    difference = (onnx - pickle.reindex(onnx.index)).abs().max()
    print(f"\nchurn_scores at {events:,} transactions, {len(onnx):,} customers")
    print("| runtime | asset, s (median, min) | scoring loop, s (median, min) |")
    print("|---|---|---|")
    for runtime in RUNTIMES:
        asset = [r[0] for r in runs[runtime]]
        loop = [r[1] for r in runs[runtime]]
        print(
            f"| {runtime} | {statistics.median(asset):.2f}, {min(asset):.2f} "
            f"| {statistics.median(loop):.2f}, {min(loop):.2f} |"
        )
    ratio = statistics.median(r[1] for r in runs["onnx"]) / statistics.median(
        r[1] for r in runs["pickle"]
    )
    asset_ratio = statistics.median(r[0] for r in runs["onnx"]) / statistics.median(
        r[0] for r in runs["pickle"]
    )
    print(f"ONNX / pickle: scoring loop {ratio:.2f}x, asset {asset_ratio:.2f}x")
    print(f"largest |ONNX - pickle| over every customer: {difference:.2e}")
    met = ratio <= 1.0
    print(f"target (ONNX scoring no slower than the pickle's): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
