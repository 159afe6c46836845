"""When `churn_model` trains: not for every file that lands, but once `retrain_after_days` of
data have landed since the newest version trained the same way; meanwhile the champion is kept
and re-scores every customer."""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from lakehouse_assets.defs.model.churn_model import ChurnModelConfig
from lakehouse_assets.defs.model.churn_model_evaluation import BEATS_BASELINE, EvaluationConfig
from lakehouse_assets_tests.support.helpers import (
    MODEL,
    check_results,
    client_for,
    failure_messages,
    run_graph,
    scalar,
    step_starts,
)


def land_one_purchase(home: Path, name: str, when) -> None:
    """A file with one purchase at `when`, which moves the cutoffs to it."""
    (home / "landing" / f"{name}.csv").write_text(
        "transaction_id,customer_id,event_time,amount\n"
        f"{name},{name}-customer,{when:%Y-%m-%dT%H:%M:%S},12.5\n"
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {
        k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()
    }


def versions(home: Path) -> list[str]:
    client = client_for(f"sqlite:///{home / 'mlflow.db'}")
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def test_the_champion_is_kept_until_a_week_of_data_has_landed(lakehouse_home, instance):
    first = run_graph(instance)
    assert first.success, failure_messages(first)
    assert metadata(first, "churn_model")["retraining"] == "trained: there is no champion yet"
    latest = scalar(lakehouse_home, "SELECT max(event_time) FROM silver.transactions")

    # Two days of data: the champion is kept, recorded figures re-checked, everyone re-scored.
    land_one_purchase(lakehouse_home, "day2", latest + timedelta(days=2))
    kept = run_graph(instance)
    assert kept.success, failure_messages(kept)
    trained = metadata(kept, "churn_model")
    assert trained["kept_version"] == "1" and trained["identical_to_version"] == "none"
    assert "is 2.00 days past" in trained["retraining"], trained["retraining"]
    assert "retraining is due at 7 days" in trained["retraining"]
    assert trained["mlflow_run_id"] == metadata(first, "churn_model")["mlflow_run_id"]
    evaluation = metadata(kept, "churn_model_evaluation")
    assert evaluation["roc_auc"] == metadata(first, "churn_model_evaluation")["roc_auc"]
    assert "not re-evaluated" in evaluation["champion_comparison"]
    [check] = [e for e in kept.get_asset_check_evaluations() if e.check_name == BEATS_BASELINE]
    assert check.passed and "kept champion version 1" in check.description
    registered = metadata(kept, "registered_churn_model")
    assert registered["new_version"] is False
    assert "retraining is not due" in registered["decision"]
    scores = metadata(kept, "churn_scores")
    assert scores["model_version"] == "1"
    assert scores["features_as_of"] == str(latest + timedelta(days=2))
    assert (
        scalar(
            lakehouse_home,
            "SELECT count(*) FROM gold.churn_scores WHERE customer_id = 'day2-customer'",
        )
        == 1
    )
    assert versions(lakehouse_home) == ["1"]

    # Eight days since version 1's cutoff: retraining is due.
    land_one_purchase(lakehouse_home, "day8", latest + timedelta(days=8))
    due = run_graph(instance)
    assert due.success, failure_messages(due)
    trained = metadata(due, "churn_model")
    assert trained["kept_version"] == "none"
    assert "is 8.00 days past" in trained["retraining"], trained["retraining"]
    assert versions(lakehouse_home) == ["1", "2"]

    # A replaced file moves the cutoff back before version 2's: retrain once, then keep.
    land_one_purchase(lakehouse_home, "day8", latest + timedelta(days=5))
    back = run_graph(instance)
    assert back.success, failure_messages(back)
    assert "a replaced file moved it back" in metadata(back, "churn_model")["retraining"]
    land_one_purchase(lakehouse_home, "day6", latest + timedelta(days=6))
    after = run_graph(instance)
    assert after.success, failure_messages(after)
    trained = metadata(after, "churn_model")
    assert "is 1.00 days past" in trained["retraining"] and "of version 3" in trained["retraining"]
    assert versions(lakehouse_home) == ["1", "2", "3"]
    champion = metadata(after, "registered_churn_model")["champion_version"]
    assert trained["kept_version"] == champion

    # A day later the champion is kept again; a margin its recorded evaluation does not meet
    # fails the blocking check, and nothing downstream runs.
    land_one_purchase(lakehouse_home, "day9", latest + timedelta(days=9))
    strict = dg.RunConfig(
        ops={"churn_model_evaluation": EvaluationConfig(recency_roc_auc_margin=0.5)}
    )
    blocked = run_graph(instance, run_config=strict)
    assert not blocked.success
    assert metadata(blocked, "churn_model")["kept_version"] == champion
    assert check_results(blocked)[BEATS_BASELINE] is False
    assert step_starts(blocked, "registered_churn_model") == 0

    # retrain_after_days: 0 (the weekly schedule's config) trains whatever the data's age.
    always = dg.RunConfig(ops={"churn_model": ChurnModelConfig(retrain_after_days=0)})
    forced = run_graph(instance, run_config=always)
    assert forced.success, failure_messages(forced)
    assert metadata(forced, "churn_model")["kept_version"] == "none"
    assert versions(lakehouse_home) == ["1", "2", "3", "4"]


def test_other_parameters_are_trained_at_once(lakehouse_home, instance):
    assert run_graph(instance).success
    latest = scalar(lakehouse_home, "SELECT max(event_time) FROM silver.transactions")
    land_one_purchase(lakehouse_home, "day1", latest + timedelta(days=1))
    other = dg.RunConfig(ops={"churn_model": ChurnModelConfig(regularization_c=0.1)})
    second = run_graph(instance, run_config=other)
    assert second.success, failure_messages(second)
    trained = metadata(second, "churn_model")
    assert trained["kept_version"] == "none"
    assert "no version was trained with these parameters" in trained["retraining"]
    assert versions(lakehouse_home) == ["1", "2"]
