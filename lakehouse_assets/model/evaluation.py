"""`churn_model_evaluation`: verify, score and compare the new model before it may be registered."""

import tempfile
from pathlib import Path

import dagster as dg

from lakehouse_assets.metadata import markdown_rows
from lakehouse_assets.model import pickles
from lakehouse_assets.model.champion import current_champion, load_verified_model
from lakehouse_assets.model.dataset import features_fingerprint, load_split
from lakehouse_assets.model.lineage import upstream_metadata
from lakehouse_assets.model.mlflow_errors import retry_only_transient
from lakehouse_assets.model.mlflow_resource import MlflowTracking
from lakehouse_assets.model.retries import mlflow_retry_policy
from lakehouse_assets.model.scoring import (
    churn_probability,
    majority_baseline,
    predicted_churn,
    score,
    scores_from_probability,
)
from lakehouse_assets.model.training import FINGERPRINT_TAG, SHA_TAG, churn_model
from lakehouse_assets.resources import LakehouseDuckDB

BEATS_BASELINE = "churn_model_beats_baseline"


class EvaluationConfig(dg.Config):
    min_roc_auc_margin: float = 0.05
    """The model must reach ROC AUC of at least 0.5 + this margin (and the baseline's accuracy)."""


@dg.asset(
    deps=[churn_model],
    group_name="model",
    kinds={"scikitlearn", "mlflow"},
    retry_policy=mlflow_retry_policy(),
    pool="duckdb",  # reads the DuckDB file, which a writer in another run may hold
    check_specs=[dg.AssetCheckSpec(BEATS_BASELINE, asset="churn_model_evaluation", blocking=True)],
)
def churn_model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    duckdb: LakehouseDuckDB,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult:
    """Downloads `model/model.pkl` of the `churn_model` run, refuses it unless its SHA-256 matches
    the hash Dagster recorded at training (and the run's `model_sha256` tag), scores it on the
    held-out split and compares it with a majority-class baseline and the current `champion`
    version. Blocking check: the model must beat the baseline, so a bad model is never
    registered."""
    trained = upstream_metadata(context, "churn_model")
    run_id, expected_sha = trained["mlflow_run_id"], trained["model_sha256"]
    client = mlflow.client()
    with retry_only_transient("churn_model_evaluation"), tempfile.TemporaryDirectory() as tmp:
        with mlflow.errors(f"read run {run_id}"):
            data = client.get_run(run_id).data
        params, tags = data.params, data.tags
        if tags.get(SHA_TAG) != expected_sha:
            raise dg.Failure(
                f"Refusing model/model.pkl of MLflow run {run_id}: its tag {SHA_TAG} is "
                f"{tags.get(SHA_TAG)}, but Dagster recorded {expected_sha} when it was trained.",
                allow_retries=False,
            )
        with duckdb.get_connection() as conn:
            fingerprint = features_fingerprint(conn)
        if fingerprint != tags.get(FINGERPRINT_TAG):
            raise dg.Failure(
                f"gold.customer_features changed since churn_model was trained (MLflow run {run_id}): "
                "its held-out split no longer exists. Materialize churn_model again.",
                allow_retries=False,
            )
        split = load_split(
            duckdb,
            float(params["test_size"]),
            int(params["random_state"]),
            int(params["max_train_rows"]),
        )
        payload = mlflow.download_model_pickle(client, run_id, Path(tmp))
        model = pickles.load_verified(
            payload, expected_sha, f"model/model.pkl of MLflow run {run_id}"
        )
        probability = churn_probability(model, split.x_test)
        model_scores = scores_from_probability(split.y_test, probability)
        baseline = majority_baseline(split.y_train, split.y_test)
        champion = current_champion(mlflow, client)
        champion_scores, champion_note = _score_champion(
            mlflow, client, champion, params, split, Path(tmp) / "champion"
        )

        beats_baseline = (
            model_scores["roc_auc"] >= 0.5 + config.min_roc_auc_margin
            and model_scores["accuracy"] >= baseline["accuracy"]
        )
        if champion is None:
            beats_champion = True
        else:
            beats_champion = (
                champion_scores is not None and model_scores["roc_auc"] > champion_scores["roc_auc"]
            )
        logged = {f"baseline_{k}": v for k, v in baseline.items() if k != "roc_auc"}
        logged |= {f"champion_{k}": v for k, v in (champion_scores or {}).items()}
        logged |= {"beats_baseline": float(beats_baseline), "beats_champion": float(beats_champion)}
        # Logged to the training run, whatever Dagster run this is; its status is left alone.
        with mlflow.errors(f"log the evaluation to run {run_id}"):
            from mlflow.entities import Metric, RunTag

            client.log_batch(
                run_id,
                metrics=[Metric(k, v, 0, 0) for k, v in logged.items()],
                tags=[RunTag("champion_version", champion.version if champion else "none")],
            )

    context.log.info(f"Model {model_scores}, baseline {baseline}, champion {champion_scores}")
    comparison = [("model", *_row(model_scores)), ("majority baseline", *_row(baseline))]
    if champion_scores:
        comparison.append((f"champion v{champion.version}", *_row(champion_scores)))
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": run_id,
            **{k: v for k, v in model_scores.items()},
            **{f"baseline_{k}": v for k, v in baseline.items()},
            **{f"champion_{k}": v for k, v in (champion_scores or {}).items()},
            "champion_version": champion.version if champion else "none",
            "champion_comparison": champion_note,
            "model_sha256": expected_sha,
            "beats_baseline": beats_baseline,
            "beats_champion": beats_champion,
            "comparison": dg.MetadataValue.md(
                markdown_rows(["model", "roc_auc", "accuracy", "f1_score"], comparison)
            ),
            "confusion_matrix": dg.MetadataValue.md(_confusion(split.y_test, probability)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=BEATS_BASELINE,
                passed=bool(beats_baseline),
                metadata={
                    "roc_auc": model_scores["roc_auc"],
                    "required_roc_auc": 0.5 + config.min_roc_auc_margin,
                    "accuracy": model_scores["accuracy"],
                    "baseline_accuracy": baseline["accuracy"],
                },
            )
        ],
    )


def _score_champion(mlflow, client, champion, params, split, work_dir: Path):
    """The champion's scores on this split, or None with the reason it cannot be compared."""
    if champion is None:
        return None, "no champion yet"
    with mlflow.errors(f"read the champion's run {champion.run_id}"):
        champion_params = client.get_run(champion.run_id).data.params
    same = ("random_state", "test_size", "features")
    if any(champion_params.get(k) != params.get(k) for k in same):
        return None, (
            f"champion v{champion.version} is not comparable: it was trained with a different "
            f"split or feature set ({', '.join(same)} differ); it stays champion"
        )
    model = load_verified_model(mlflow, client, champion, work_dir)
    return score(model, split.x_test, split.y_test), f"compared with champion v{champion.version}"


def _row(scores: dict[str, float]) -> tuple[str, str, str]:
    return tuple(f"{scores[k]:.4f}" for k in ("roc_auc", "accuracy", "f1_score"))


def _confusion(y_test, probability) -> str:
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_test, predicted_churn(probability), labels=[0, 1])
    return markdown_rows(
        ["actual \\ predicted", "retained (0)", "churned (1)"],
        [("retained (0)", *map(int, matrix[0])), ("churned (1)", *map(int, matrix[1]))],
    )
