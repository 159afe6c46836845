"""Realized performance: the champion's past scores against what the customers then did, on
CDNOW landed quarter by quarter."""

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lakehouse_assets.defs.model.churn_scores_outcomes import REALIZED_ROC_AUC
from lakehouse_assets_tests.integration.test_real_log import write_cdnow_csv
from lakehouse_assets_tests.support.helpers import (
    NO_SEED,
    check_results,
    failure_messages,
    query,
    run_graph,
)


def land_quarters(source: Path, landing: Path, until: str) -> None:
    """Land the CDNOW rows of each quarter up to `until` (exclusive) as a file of its own."""
    rows = pd.read_csv(source, dtype=str)
    days = pd.to_datetime(rows["event_time"])
    landing.mkdir(parents=True, exist_ok=True)
    for start in pd.date_range("1997-01-01", until, freq="QS", inclusive="left"):
        quarter = rows[(days >= start) & (days < start + pd.DateOffset(months=3))]
        path = landing / f"cdnow_{start:%Y_q%q}.csv".replace("%q", str(start.quarter))
        if not path.exists():
            quarter.to_csv(path, index=False)


def realized_metadata(result) -> dict:
    (materialization,) = result.asset_materializations_for_node("churn_scores_outcomes")
    return {k: v.value for k, v in materialization.metadata.items()}


def test_scores_are_judged_once_the_data_cover_their_horizon(lakehouse_home, instance, tmp_path):
    source = tmp_path / "cdnow.csv"
    write_cdnow_csv(source)
    landing = lakehouse_home / "landing"

    land_quarters(source, landing, until="1998-01-01")  # 1997: scored as of its last day
    first = run_graph(instance, run_config=NO_SEED)
    assert first.success, failure_messages(first)
    metadata = realized_metadata(first)
    assert metadata["scorings"] == 1 and metadata["scorings_judged"] == 0
    assert "realized_roc_auc" not in metadata
    assert "No scoring is covered yet" in metadata["realized"]
    assert "1998-03-31" in metadata["realized"]  # when it will be
    assert check_results(first)[REALIZED_ROC_AUC] is True
    # Scoring the same features with the same version again replaces that scoring's rows.
    again = run_graph(instance, dg.AssetSelection.assets("churn_scores"))
    assert again.success, failure_messages(again)
    history = "SELECT count(*), count(DISTINCT customer_id) FROM gold.churn_scores_history"
    assert query(lakehouse_home, history) == query(
        lakehouse_home, "SELECT count(*), count(*) FROM gold.churn_scores"
    )

    land_quarters(source, landing, until="1998-04-01")  # 1998's first quarter covers 90 days
    second = run_graph(instance, run_config=NO_SEED)
    assert second.success, failure_messages(second)
    metadata = realized_metadata(second)
    assert metadata["scorings"] == 2 and metadata["scorings_judged"] == 1
    assert metadata["plot_realized_roc_auc"].startswith("![realized_roc_auc](data:image/png")
    (scored_at_cutoff,) = {
        row[0]
        for row in query(
            lakehouse_home, "SELECT min(features_as_of) FROM gold.churn_scores_history"
        )
    }
    assert metadata["realized_features_as_of"] == str(scored_at_cutoff)
    assert metadata["realized_model_version"] == "1"

    # The same figure from the raw file, with pandas: scored customers who bought nothing in
    # the 90 days after the cutoff churned.
    raw = pd.read_csv(source, parse_dates=["event_time"])
    after = raw[
        (raw.event_time > scored_at_cutoff)
        & (raw.event_time <= scored_at_cutoff + timedelta(days=90))
    ]
    scores = pd.DataFrame(
        query(
            lakehouse_home,
            "SELECT customer_id, churn_probability FROM gold.churn_scores_history "
            "WHERE features_as_of = $at",
            {"at": scored_at_cutoff},
        ),
        columns=["customer_id", "churn_probability"],
    )
    assert len(scores) == raw[raw.event_time <= scored_at_cutoff].customer_id.nunique()
    churned = ~scores.customer_id.astype(int).isin(after.customer_id)
    independent = roc_auc_score(churned, scores.churn_probability)
    # The same labels (the issue asks for 0.05; they agree exactly, so a window off by a day
    # would show).
    assert metadata["realized_roc_auc"] == pytest.approx(independent, abs=1e-9)
    assert metadata["realized_churn_rate"] == pytest.approx(churned.mean(), abs=1e-12)
    # A model judged on its own period: close to what its evaluation promised.
    assert metadata["evaluation_roc_auc"] - 0.1 < metadata["realized_roc_auc"] < 1.0
    assert check_results(second)[REALIZED_ROC_AUC] is True
    print(
        f"realized ROC AUC {metadata['realized_roc_auc']:.4f}, pandas {independent:.4f}, "
        f"evaluation {metadata['evaluation_roc_auc']:.4f}"
    )

    # The customers turn around: 1998's second quarter's purchases are made by those the
    # scores as of 1998-03-31 called most at risk. The check warns on those scores.
    land_turned_around(source, landing, lakehouse_home)
    third = run_graph(instance, run_config=NO_SEED)
    assert third.success, failure_messages(third)
    metadata = realized_metadata(third)
    assert metadata["scorings_judged"] == 2
    assert metadata["realized_roc_auc"] < metadata["evaluation_roc_auc"] - 0.05
    (check,) = [e for e in third.get_asset_check_evaluations() if e.check_name == REALIZED_ROC_AUC]
    assert not check.passed and check.severity.value == "WARN"
    assert "Retrain" in check.description
    print(f"turned around: realized ROC AUC {metadata['realized_roc_auc']:.4f}")


def land_turned_around(source: Path, landing: Path, home: Path) -> None:
    """Land 1998's second quarter with its buyers replaced, one for one, by the customers that
    the latest scoring ranked most at risk."""
    rows = pd.read_csv(source, dtype=str)
    quarter = rows[pd.to_datetime(rows["event_time"]) >= "1998-04-01"].copy()
    at_risk = [
        customer
        for (customer,) in query(
            home,
            "SELECT customer_id FROM gold.churn_scores_history WHERE features_as_of = "
            "(SELECT max(features_as_of) FROM gold.churn_scores_history) "
            "ORDER BY churn_probability DESC, customer_id",
        )
    ]
    buyers = quarter["customer_id"].unique()
    replacement = dict(zip(buyers, at_risk[: len(buyers)], strict=True))
    quarter["customer_id"] = quarter["customer_id"].map(replacement)
    quarter.to_csv(landing / "cdnow_1998_q2.csv", index=False)
