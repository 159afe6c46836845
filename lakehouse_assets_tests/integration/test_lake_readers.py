"""Reading while a run writes: another process polls the lake through `lakehouse_assets.connect()`
every 0.2 s during a full rebuild and a refresh, and every read succeeds and sees committed
states only."""

import json
import subprocess
import sys
import time

import dagster as dg

from lakehouse_assets.defs.features.customer_features import FeaturesConfig
from lakehouse_assets.defs.gold.gold_customer_summary import GoldConfig
from lakehouse_assets.defs.silver.silver_transactions import SilverConfig
from lakehouse_assets_tests.support.helpers import NO_SEED, failure_messages, run_graph, write_csv

# Each read is one statement, so one snapshot. Bronze's two tables commit together, and so do
# silver's three (the watermark lists the bronze rows silver has read). Bronze itself commits
# before silver: between the two steps bronze holds rows that silver has not read yet.
READ_SQL = """
SELECT
    (SELECT count(*) FROM bronze.transactions),
    (SELECT sum(row_count) FROM bronze.ingested_files),
    (SELECT count(*) FROM silver.transactions),
    (SELECT count(*) FROM silver.rejected_transactions),
    (SELECT sum(row_count) FROM silver.bronze_files_seen)
"""
POLLER = f"""
import json, pathlib, sys, time
import lakehouse_assets
stop = pathlib.Path(sys.argv[1])
conn = lakehouse_assets.connect()
reads, errors = [], []
while not stop.exists():
    try:
        reads.append([time.time(), *conn.execute('''{READ_SQL}''').fetchone()])
    except Exception as error:
        errors.append(repr(error))
    time.sleep(0.2)
print(json.dumps({{"reads": reads, "errors": errors}}))
"""


FULL_BUILD = dg.RunConfig(
    ops={
        "silver_transactions": SilverConfig(full_refresh=True),
        "gold_customer_summary": GoldConfig(full_refresh=True),
        "customer_features": FeaturesConfig(full_refresh=True),
    }
)


def test_reads_while_a_full_build_and_a_refresh_write_all_succeed(lakehouse_home, instance):
    assert run_graph(instance, "*scoring_features").success  # the tables exist
    stop = lakehouse_home / "stop-polling"
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(3)  # reads before the runs
        windows = []
        started = time.time()
        full = run_graph(instance, run_config=FULL_BUILD)
        windows.append((started, time.time()))
        assert full.success, failure_messages(full)
        write_csv(
            lakehouse_home / "landing" / "late.csv",
            "transaction_id,customer_id,event_time,amount,quantity\n"
            + "".join(
                f"late-{i},C{i:08d},2025-12-30T10:00:00,{i % 50 + 1},1\n" for i in range(500)
            ),
        )
        started = time.time()
        refresh = run_graph(instance, run_config=NO_SEED)
        windows.append((started, time.time()))
        assert refresh.success, failure_messages(refresh)
        time.sleep(1)
    finally:
        stop.touch()
        out, _ = poller.communicate(timeout=60)
    polled = json.loads(out)
    reads = polled["reads"]
    assert polled["errors"] == []
    # Reads went on during each run: the poller reads every 0.2 s or so when it has a core, and
    # a reader blocked by the writer would read nothing until the commit. At least one read a
    # second leaves room for a loaded host (a rate of 2.2/s was seen with two suites at once).
    for start, end in windows:
        during = [r for r in reads if start <= r[0] <= end]
        assert len(during) >= end - start, (len(during), end - start)
    between = 0
    for _, bronze, bronze_files, silver, rejected, seen in reads:
        assert bronze == bronze_files  # bronze's commit is whole
        assert silver + rejected == seen  # silver's commit is whole
        between += bronze != silver + rejected  # bronze committed, silver not yet
    first, last = reads[0], reads[-1]
    assert first[1] == first[3] + first[4] and last[1] == last[3] + last[4]
    assert last[1] == first[1] + 500  # the refresh was seen landing
    print(f"{len(reads)} reads, {between} between bronze's commit and silver's")
