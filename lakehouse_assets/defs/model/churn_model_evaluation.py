"""`churn_model_evaluation`: verify, score and compare the new model before it may be registered."""

import tempfile
from pathlib import Path

import dagster as dg

from lakehouse_assets.lib.metadata import markdown_rows
from lakehouse_assets.lib.model import pickles, signing
from lakehouse_assets.lib.model.baselines import (
    VERDICT_METRICS,
    beats_baselines,
    ladder,
    ladder_table,
    recency_score,
)
from lakehouse_assets.lib.model.champion import (
    current_champion,
    load_verified_model,
    verified_onnx,
)
from lakehouse_assets.lib.model.dataset import features_fingerprint, load_split
from lakehouse_assets.lib.model.lineage import upstream_metadata
from lakehouse_assets.lib.model.metrics import ALL_METRICS, probability_metrics
from lakehouse_assets.lib.model.mlflow_errors import retry_only_transient
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets.lib.model.plots import evaluation_plots, log_plots, markdown_image
from lakehouse_assets.lib.model.retries import mlflow_retry_policy
from lakehouse_assets.lib.model.scoring import churn_probability, predicted_churn
from lakehouse_assets.lib.model.training import ONNX_SHA_TAG, SHA_TAG
from lakehouse_assets.lib.model.training_data import FINGERPRINT_TAG
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES

BEATS_BASELINE = "churn_model_beats_baseline"


class EvaluationConfig(dg.Config):
    recency_roc_auc_margin: float = 0.0
    """The model's ROC AUC must be strictly above the recency rule's (score = `recency_days`)
    plus this margin; its Brier score must also be no worse than the majority baseline's."""


@dg.asset(
    deps=["churn_model"],
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
    the hash Dagster recorded at training (and the run's `model_sha256` tag) and, with a signing
    key, its `model_signature` verifies (the champion's too), scores it on the
    held-out split and compares it, on the same customers, with a baseline ladder (the training
    churn rate as a constant; the recency rule, score = `recency_days`) and the current
    `champion` version: ROC AUC, PR AUC, Brier, log loss, top-decile capture and lift, calibration
    error, accuracy, F1, and pictures (ROC, precision-recall, gains, calibration, importances,
    probability histogram). Blocking check: ROC AUC above the recency rule's (+ margin) and
    Brier no worse than the majority baseline's, so a model a one-line rule matches is never
    registered. When `churn_model` kept the champion (retraining not due), nothing is scored
    again: the champion's recorded evaluation is checked against the current margin."""
    trained = upstream_metadata(context, "churn_model")
    run_id, expected_sha = trained["mlflow_run_id"], trained["model_sha256"]
    client = mlflow.client()
    if trained.get("kept_version", "none") != "none":
        return _recorded_evaluation(mlflow, client, trained, config)
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
                f"{CUSTOMER_FEATURES} changed since churn_model was trained (MLflow run {run_id}): "
                "its held-out split no longer exists. Materialize churn_model again.",
                allow_retries=False,
            )
        split = load_split(
            duckdb,
            float(params["test_size"]),
            int(params["random_state"]),
            int(params["max_train_rows"]),
            features=("test",),  # the training side's labels only, for the majority baseline
        )
        payload = mlflow.download_model_pickle(client, run_id, Path(tmp))
        model = pickles.load_verified(
            payload,
            expected_sha,
            f"model/model.pkl of MLflow run {run_id}",
            run_id=run_id,
            signature=tags.get(signing.SIGNATURE_TAG),
        )
        onnx_sha = _verify_onnx(mlflow, client, run_id, tags, trained, Path(tmp) / "onnx")
        probability = churn_probability(model, split.x_test)
        model_scores = probability_metrics(split.y_test, probability)
        baselines = ladder(split.y_train, split.x_test, split.y_test)
        champion = current_champion(mlflow, client)
        champion_probability, champion_note = _score_champion(
            mlflow, client, champion, params, split, Path(tmp) / "champion"
        )
        champion_scores = (
            None
            if champion_probability is None
            else probability_metrics(split.y_test, champion_probability)
        )
        verdict = beats_baselines(
            model_scores, baselines["majority"], baselines["recency"], config.recency_roc_auc_margin
        )
        beats_baseline = verdict.passed
        if champion is None:
            beats_champion = True
        else:
            # As good as a champion without an ONNX model is enough: it then scores without a pickle.
            onnx_upgrade = onnx_sha != "none" and not champion.onnx_sha256
            beats_champion = champion_scores is not None and (
                model_scores["roc_auc"] > champion_scores["roc_auc"]
                or (onnx_upgrade and model_scores["roc_auc"] >= champion_scores["roc_auc"])
            )
        figures = dict(model_scores)  # every metric of the ladder, as `baseline_recency_roc_auc`
        for name, scores in baselines.items():
            figures |= {f"baseline_{name}_{k}": v for k, v in scores.items()}
        figures |= {f"champion_{k}": v for k, v in (champion_scores or {}).items()}
        logged = figures | {
            "beats_baseline": float(beats_baseline),
            "beats_champion": float(beats_champion),
        }
        curves = {"model": probability, "recency rule": recency_score(split.x_test)}
        known = {"model": model_scores, "recency rule": baselines["recency"]}
        if champion is not None and champion_probability is not None and champion_scores:
            curves[f"champion v{champion.version}"] = champion_probability
            known[f"champion v{champion.version}"] = champion_scores
        plots = evaluation_plots(model, split, curves, known)  # labels: the AUCs just computed
        log_plots(mlflow, client, run_id, plots, Path(tmp) / "plots")
        # Logged to the training run, whatever Dagster run this is; its status is left alone.
        with mlflow.errors(f"log the evaluation to run {run_id}"):
            from mlflow.entities import Metric, RunTag

            client.log_batch(
                run_id,
                metrics=[Metric(k, v, 0, 0) for k, v in logged.items()],
                tags=[RunTag("champion_version", champion.version if champion else "none")],
            )

    context.log.info(f"Model {model_scores}, baselines {baselines}, champion {champion_scores}")
    context.log.info(f"{BEATS_BASELINE}: {verdict.reason}")
    rows = {"model": model_scores, "recency rule": baselines["recency"]}
    rows["majority baseline"] = baselines["majority"]
    if champion is not None and champion_scores:
        rows[f"champion v{champion.version}"] = champion_scores
    table = ladder_table(rows)
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": run_id,
            **figures,
            "champion_version": champion.version if champion else "none",
            "champion_comparison": champion_note,
            "model_sha256": expected_sha,
            "onnx_sha256": onnx_sha,
            "provenance": signing.status(),
            "beats_baseline": beats_baseline,
            "beats_champion": beats_champion,
            "comparison": dg.MetadataValue.md(table),
            "confusion_matrix": dg.MetadataValue.md(_confusion(split.y_test, probability)),
            **{
                f"plot_{name}": dg.MetadataValue.md(markdown_image(name, png))
                for name, png in plots.items()
            },
        },
        check_results=[
            _check_result(verdict, verdict.reason, model_scores, baselines["recency"], table)
        ],
    )


def _recorded_evaluation(mlflow, client, trained: dict, config) -> dg.MaterializeResult:
    """The kept champion's evaluation as its run recorded it (metrics of the model and the
    baselines on its held-out customers), with the check applied to it again."""
    run_id, version = trained["mlflow_run_id"], trained["kept_version"]
    with retry_only_transient("churn_model_evaluation"), mlflow.errors(f"read run {run_id}"):
        metrics = client.get_run(run_id).data.metrics
    if any(k not in metrics for k in VERDICT_METRICS):
        raise dg.Failure(
            f"Champion version {version} (MLflow run {run_id}) has no recorded evaluation to "
            "keep; materialize churn_model with retrain_after_days: 0 to train and evaluate "
            "a new model.",
            allow_retries=False,
        )
    prefixes = {"model": "", "majority": "baseline_majority_", "recency": "baseline_recency_"}
    rows = {
        name: {k: metrics[prefix + k] for k in ALL_METRICS if prefix + k in metrics}
        for name, prefix in prefixes.items()
    }
    verdict = beats_baselines(
        rows["model"], rows["majority"], rows["recency"], config.recency_roc_auc_margin
    )
    reason = (
        f"kept champion version {version}, as evaluated in MLflow run {run_id}: {verdict.reason}"
    )
    table = ladder_table(
        {
            "model": rows["model"],
            "recency rule": rows["recency"],
            "majority baseline": rows["majority"],
        }
    )
    figures = dict(rows["model"])
    for name in ("majority", "recency"):
        figures |= {f"baseline_{name}_{k}": v for k, v in rows[name].items()}
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": run_id,
            **figures,
            "champion_version": version,
            "champion_comparison": f"not re-evaluated: churn_model kept champion version {version}",
            "model_sha256": trained["model_sha256"],
            "provenance": signing.status(),
            "beats_baseline": verdict.passed,
            "beats_champion": False,
            "comparison": dg.MetadataValue.md(table),
            "plots": dg.MetadataValue.md(
                f"The plots of version {version}'s evaluation are in MLflow run {run_id}, "
                "under `plots/`."
            ),
        },
        check_results=[_check_result(verdict, reason, rows["model"], rows["recency"], table)],
    )


def _check_result(verdict, reason: str, model: dict, recency: dict, ladder: str):
    return dg.AssetCheckResult(
        check_name=BEATS_BASELINE,
        passed=bool(verdict.passed),
        description=reason,
        metadata={
            "roc_auc": model["roc_auc"],
            "recency_roc_auc": recency["roc_auc"],
            "required_roc_auc_above": verdict.required_roc_auc,
            "brier": model["brier"],
            "max_brier": verdict.max_brier,
            "reason": dg.MetadataValue.md(reason),
            "ladder": dg.MetadataValue.md(ladder),
        },
    )


def _verify_onnx(mlflow, client, run_id: str, tags: dict, trained: dict, work_dir: Path) -> str:
    """The run's ONNX model verified as its pickle is: its tag must be the hash Dagster recorded at
    training, and the file must match it (and, with a key, its signature). "none" without one."""
    expected = trained.get("onnx_sha256", "none")
    if tags.get(ONNX_SHA_TAG, "none") != expected:
        raise dg.Failure(
            f"Refusing model_onnx/model.onnx of MLflow run {run_id}: its tag {ONNX_SHA_TAG} is "
            f"{tags.get(ONNX_SHA_TAG)}, but Dagster recorded {expected} when it was trained.",
            allow_retries=False,
        )
    if expected != "none":
        source = f"model_onnx/model.onnx of MLflow run {run_id}"
        signature = tags.get(signing.ONNX_SIGNATURE_TAG)
        verified_onnx(mlflow, client, run_id, expected, signature, source, work_dir)
    return expected


def _score_champion(mlflow, client, champion, params, split, work_dir: Path):
    """The champion's churn probabilities on this split, or None with the reason it cannot be
    compared."""
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
    return churn_probability(model, split.x_test), f"compared with champion v{champion.version}"


def _confusion(y_test, probability) -> str:
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_test, predicted_churn(probability), labels=[0, 1])
    return markdown_rows(
        ["actual \\ predicted", "retained (0)", "churned (1)"],
        [("retained (0)", *map(int, matrix[0])), ("churned (1)", *map(int, matrix[1]))],
    )
