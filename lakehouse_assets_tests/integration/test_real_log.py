"""A real transaction log: CDNOW (69,659 CD purchases by 23,570 customers, 1997-1998), as shipped
in the `lifetimes` package, converted to the contract format and run through the whole graph."""

from importlib.resources import files
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from lakehouse_assets.lib.model.drift import SCORING_FEATURES_DRIFT
from lakehouse_assets_tests.support.helpers import (
    NO_SEED,
    assert_onnx_parity_on_every_customer,
    champion_predicts,
    check_results,
    failure_messages,
    run_graph,
    running_runs,
    scalar,
)


def write_cdnow_csv(path: Path) -> int:
    """CDNOW_master.txt ('00001 19970101  1   11.77') as customer_id,event_time,quantity,amount."""
    lines = (files("lifetimes.datasets") / "CDNOW_master.txt").read_text().splitlines()[1:]
    rows = []
    for line in lines:
        customer, day, quantity, amount = line.split()
        rows.append(f"{customer},{day[:4]}-{day[4:6]}-{day[6:]},{quantity},{amount}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("customer_id,event_time,quantity,amount\n" + "\n".join(rows) + "\n")
    return len(rows)


def test_cdnow_log_runs_through_the_whole_graph(lakehouse_home, instance):
    rows = write_cdnow_csv(lakehouse_home / "landing" / "cdnow.csv")
    assert rows == 69_659
    result = run_graph(instance, run_config=NO_SEED)
    assert result.success, failure_messages(result)
    checks = check_results(result)
    drift = checks.pop(SCORING_FEATURES_DRIFT)
    assert len(checks) == 14 and all(checks.values()), checks
    # One cohort, acquired in 1997's first quarter, that really aged between the snapshots: no
    # customer scored now is as young as a training one, so they cannot be matched. Worth a
    # warning, on its purchase rhythm, not on its amounts.
    assert drift is False
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == SCORING_FEATURES_DRIFT
    ]
    assert evaluation.metadata["matched_share"].value == 0.0
    named = set(evaluation.metadata["drifted_features"].value.split(", "))
    assert named == {"recency_days", "purchases_per_30d"}
    assert not {f for f in named if f.startswith(("amount", "monetary"))}, named
    bronze = scalar(lakehouse_home, "SELECT count(*) FROM bronze.transactions")
    silver = scalar(lakehouse_home, "SELECT count(*) FROM silver.transactions")
    rejected = scalar(lakehouse_home, "SELECT count(*) FROM silver.rejected_transactions")
    assert bronze == rows and silver + rejected == bronze
    # CDNOW has no transaction_id: same-day repeat purchases of the same value are duplicates.
    assert rejected == scalar(
        lakehouse_home,
        "SELECT count(*) FROM silver.rejected_transactions WHERE reason = 'duplicate'",
    )
    assert scalar(lakehouse_home, "SELECT count(*) FROM gold.customer_summary") == 23_570
    evaluation = result.asset_materializations_for_node("churn_model_evaluation")[0].metadata
    figures = {k: v.value for k, v in evaluation.items() if isinstance(v.value, float)}
    # Measured with the defaults (docs/model-quality.md, "Held-out figures of the defaults"), minus a small tolerance.
    assert figures["roc_auc"] >= 0.840  # 0.8448
    assert figures["pr_auc"] >= 0.960  # 0.9648
    assert figures["brier"] <= 0.0900  # 0.0886
    assert figures["log_loss"] <= 0.300  # 0.2951
    assert figures["ece"] <= 0.02  # 0.0114
    # The same customers every time: the rule's figures do not depend on the model.
    assert figures["baseline_recency_roc_auc"] == pytest.approx(0.8350, abs=1e-4)
    assert figures["baseline_majority_brier"] == pytest.approx(0.1187, abs=1e-4)
    assert figures["roc_auc"] > figures["baseline_recency_roc_auc"]
    uri = f"sqlite:///{lakehouse_home / 'mlflow.db'}"
    assert champion_predicts(uri, lakehouse_home)[0] == "1"  # ONNX = pickle on the scored
    assert running_runs(uri) == []
    assert_onnx_parity_on_every_customer(result, lakehouse_home)  # and on the trained


def test_cdnow_with_five_times_the_recent_amounts_names_the_amount_features(
    lakehouse_home, instance, tmp_path
):
    """CDNOW's last 90 days of amounts times 5: 86% of its customers bought nothing then, yet
    the drift check names the amount features (docs/model-quality.md, "Drift")."""
    source = tmp_path / "cdnow.csv"
    write_cdnow_csv(source)
    rows = pd.read_csv(source, dtype={"customer_id": str})
    days = pd.to_datetime(rows["event_time"])
    recent = days > days.max() - pd.Timedelta(days=90)
    rows.loc[recent, "amount"] = (rows.loc[recent, "amount"] * 5).round(2)
    (lakehouse_home / "landing").mkdir(parents=True)
    rows.to_csv(lakehouse_home / "landing" / "cdnow.csv", index=False)
    result = run_graph(
        instance, dg.AssetSelection.groups("raw", "bronze", "silver", "gold", "features"), NO_SEED
    )
    assert result.success, failure_messages(result)
    (drift,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == SCORING_FEATURES_DRIFT
    ]
    named = set(drift.metadata["drifted_features"].value.split(", "))
    assert {"amount_last_30d", "amount_last_90d"} <= named and not drift.passed
    # What plain CDNOW names besides (test above): its ageing.
    assert named - {"recency_days", "purchases_per_30d"} <= {
        "amount_last_30d", "amount_last_90d", "amount_last_180d", "amount_trend_90d",
        "amount_share_90d", "amount_share_180d",
    }  # fmt: skip
