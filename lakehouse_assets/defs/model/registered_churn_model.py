"""`registered_churn_model`: register the evaluated model and move `champion` only when it wins."""

import dagster as dg

from lakehouse_assets.lib.model.champion import CHAMPION_ALIAS, current_champion
from lakehouse_assets.lib.model.lineage import upstream_metadata
from lakehouse_assets.lib.model.mlflow_errors import retry_only_transient
from lakehouse_assets.lib.model.mlflow_resource import MODEL_ARTIFACT_DIR, MlflowTracking
from lakehouse_assets.lib.model.retries import mlflow_retry_policy
from lakehouse_assets.lib.model.signing import ONNX_SIGNATURE_TAG, SIGNATURE_TAG
from lakehouse_assets.lib.model.training import (
    CUTOFF_TAG,
    ONNX_SHA_TAG,
    ONNX_TAG,
    RECIPE_TAG,
    SHA_TAG,
    TRAINING_KEY_TAG,
    trusted_versions,
)
from lakehouse_assets.lib.model.training_data import FINGERPRINT_TAG


@dg.asset(
    deps=["churn_model_evaluation"],
    group_name="model",
    kinds={"mlflow"},
    retry_policy=mlflow_retry_policy(),
)
def registered_churn_model(
    context: dg.AssetExecutionContext, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    """A version of the registered model (`customer_churn` by default) whose source is the
    evaluated run's `model` artifact folder, tagged with run id, SHA-256, signature (when the
    pipeline signs models) and metrics, and the same for its ONNX model (`model_onnx/`). The alias
    `champion` moves to it only when it beats the current champion on ROC AUC; otherwise it
    stays a registered challenger. Registering happens under a lock (`$LAKEHOUSE_HOME/locks`),
    after checking again that no run registered a model with the same training key meanwhile: one
    version per training, however many runs overlap on this machine."""
    evaluation = upstream_metadata(context, "churn_model_evaluation")
    run_id = evaluation["mlflow_run_id"]
    if not evaluation["beats_baseline"]:
        raise dg.Failure(
            f"The latest evaluation of MLflow run {run_id} did not beat the baseline; "
            "refusing to register it.",
            allow_retries=False,
        )
    name = mlflow.registered_model_name
    client = mlflow.client()
    with retry_only_transient("registered_churn_model"), mlflow.registry_lock(context.log.info):
        version, twin = _version_for_run(mlflow, client, run_id, evaluation)
        champion = current_champion(mlflow, client)
        evaluated_against = evaluation["champion_version"]
        if twin is not None:
            decision = (
                f"Registered nothing new: version {version} (MLflow run {twin.run_id}) was trained "
                f"on the same features with the same parameters and registered meanwhile by "
                f"another run; this run's identical model (MLflow run {run_id}) stays unregistered."
            )
            unchanged = champion is None or champion.version == evaluated_against
            promote = champion is not None and champion.version == version
            if not promote and evaluation["beats_champion"] and unchanged:
                # The run that registered it may have ended before moving the alias.
                with mlflow.errors(f"move alias {CHAMPION_ALIAS!r} of {name!r} to {version}"):
                    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
                promote, decision = True, f"{decision} Version {version} is the new champion."
            context.log.info(decision)
            return _result(name, version, run_id, promote, champion, decision, False, evaluation)
        # A retried step may find the alias already on its own version.
        if champion is not None and champion.version not in (evaluated_against, version):
            raise dg.Failure(
                f"The champion of {name!r} changed since the evaluation (evaluated against "
                f"{evaluated_against}, now {champion.version}). "
                "Materialize churn_model_evaluation again.",
                allow_retries=False,
            )
        promote = bool(evaluation["beats_champion"])
        if champion is not None and champion.version == version:
            promote, decision = True, f"version {version} is the champion"
        elif promote:
            with mlflow.errors(f"move alias {CHAMPION_ALIAS!r} of {name!r} to version {version}"):
                client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
            decision = f"version {version} is the new champion" + (
                (
                    f" (ROC AUC {evaluation['roc_auc']:.4f} > {evaluation['champion_roc_auc']:.4f} "
                    f"of version {champion.version})"
                    if evaluation["roc_auc"] > evaluation["champion_roc_auc"]
                    else f" (ROC AUC {evaluation['roc_auc']:.4f}, as good as version "
                    f"{champion.version}, which has no ONNX model)"
                )
                if champion
                else " (first version)"
            )
        elif champion is not None and "champion_roc_auc" in evaluation:
            decision = (
                f"version {version} stays a registered challenger: ROC AUC "
                f"{evaluation['roc_auc']:.4f} does not beat champion version {champion.version} "
                f"({evaluation['champion_roc_auc']:.4f})"
            )
        else:
            decision = (
                f"version {version} stays a registered challenger: "
                f"{evaluation['champion_comparison']}"
            )
        with mlflow.errors(f"tag version {version} of {name!r}"):
            client.set_model_version_tag(
                name, version, "role", "champion" if promote else "challenger"
            )
            client.set_tag(run_id, "registered_version", version)
    trained = upstream_metadata(context, "churn_model")
    identical = trained.get("identical_to_version", "none")
    kept = trained.get("kept_version", "none")
    if identical != "none":
        decision = (
            f"Registered nothing new: the model is identical to version {identical} (same "
            f"features fingerprint and training parameters, MLflow run {run_id}). " + decision
        )
    elif kept != "none":
        decision = (
            f"Registered nothing new: retraining is not due, churn_model kept champion version "
            f"{kept} (MLflow run {run_id}). " + decision
        )
    context.log.info(decision)
    new = identical == kept == "none"
    return _result(name, version, run_id, promote, champion, decision, new, evaluation)


def _result(name, version, run_id, promote, champion, decision, new, evaluation):
    return dg.MaterializeResult(
        metadata={
            "registered_model": name,
            "version": version,
            "mlflow_run_id": run_id,
            "champion": promote,
            "champion_version": version if promote else (champion.version if champion else "none"),
            "decision": dg.MetadataValue.md(decision),
            "new_version": new,
            "roc_auc": evaluation["roc_auc"],
        }
    )


def _version_for_run(mlflow: MlflowTracking, client, run_id: str, evaluation: dict):
    """(the version registered from `run_id`, None), creating the registered model and version if
    needed; or (a version with the run's training key, that version) when another run registered
    one meanwhile. Its tags carry the training key, so that `churn_model` reuses the run of an
    identical model instead of training, and registering, it again."""
    from mlflow.exceptions import MlflowException

    name = mlflow.registered_model_name
    with mlflow.errors(f"create registered model {name!r}"):
        try:
            client.create_registered_model(
                name, description="Customer churn classifier (lakehouse-assets)"
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    with mlflow.errors(f"search versions of {name!r} from run {run_id}"):
        existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:  # a retried step, or the same run registered before
        return str(existing[0].version), None
    with mlflow.errors(f"read run {run_id}"):
        run = client.get_run(run_id)
    key = run.data.tags.get(TRAINING_KEY_TAG)
    twin = _first_twin(mlflow, client, key)
    if twin is not None:
        return str(twin.version), twin
    with mlflow.errors(f"create a version of {name!r} from run {run_id}"):
        tags = {
            "mlflow_run_id": run_id,
            SHA_TAG: evaluation["model_sha256"],  # the hashes evaluation verified
            **_onnx_tags(run, evaluation),
            **{
                k: run.data.tags[k]
                for k in (FINGERPRINT_TAG, TRAINING_KEY_TAG, RECIPE_TAG, CUTOFF_TAG, SIGNATURE_TAG)
                if k in run.data.tags
            },
            **{k: f"{evaluation[k]:.6f}" for k in ("roc_auc", "accuracy", "f1_score")},
        }
        version = client.create_model_version(
            name, source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}", run_id=run_id, tags=tags
        )
    # A process on another machine may have registered the same training meanwhile: the lowest
    # version stays, the others delete themselves (before any alias points at them).
    twin = _first_twin(mlflow, client, key)
    if twin is not None and str(twin.version) != str(version.version):
        with mlflow.errors(f"delete version {version.version} of {name!r}, a duplicate"):
            client.delete_model_version(name, version.version)
        return str(twin.version), twin
    return str(version.version), None


def _onnx_tags(run, evaluation: dict) -> dict[str, str]:
    """The version's ONNX tags: the hash evaluation verified, with the run's status and
    signature; only the status when the model was not converted."""
    tags = run.data.tags
    verified = evaluation.get("onnx_sha256", "none")
    if verified != "none":
        return {ONNX_SHA_TAG: verified} | {
            k: tags[k] for k in (ONNX_TAG, ONNX_SIGNATURE_TAG) if k in tags
        }
    if ONNX_SHA_TAG in tags:
        raise dg.Failure(
            f"MLflow run {run.info.run_id} has an ONNX model, but its evaluation verified none "
            "(it was evaluated by an older version of the pipeline). Materialize "
            "churn_model_evaluation again.",
            allow_retries=False,
        )
    return {ONNX_TAG: tags[ONNX_TAG]} if ONNX_TAG in tags else {}


def _first_twin(mlflow: MlflowTracking, client, key: str | None):
    """The lowest trusted version trained with the training key `key`, if any."""
    twins = [
        v
        for v in trusted_versions(mlflow, client)
        if key and (v.tags or {}).get(TRAINING_KEY_TAG) == key
    ]
    return min(twins, key=lambda v: int(v.version)) if twins else None
