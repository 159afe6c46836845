"""The summary a run logs when it ends: what it loaded, rejected, trained and scored, the checks
that warned or failed, and where to look next."""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking

DAGSTER_UI = "http://127.0.0.1:3000"  # where `dagster dev` serves by default


class RunReport(dg.ConfigurableResource):
    """Logs one summary when the run ends (after its last step, or its failure): files loaded,
    rows accepted and rejected by reason, the champion and the customers it scored, the checks
    that warned or failed, and the commands and addresses of the Dagster and MLflow UIs."""

    mlflow: MlflowTracking

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if context.instance is None or context.dagster_run is None:
            return
        run_id = context.dagster_run.run_id
        log = context.log or dg.get_dagster_logger()
        try:
            text = summary(read_run(context.instance, run_id), self.mlflow, run_id)
        except Exception as error:  # the run's outcome stands; only its summary is missing
            log.warning(f"Could not summarize run {run_id}: {error!r}")
            return
        log.info(text)


@dataclass
class RunEvents:
    """What a run recorded: the metadata of each materialized asset, its check results and the
    failed steps."""

    assets: dict[str, dict] = field(default_factory=dict)
    checks: list = field(default_factory=list)  # AssetCheckEvaluation
    failures: list[str] = field(default_factory=list)

    def value(self, asset: str, key: str, default=None):
        entry = self.assets.get(asset, {}).get(key)
        return default if entry is None else entry.value


def read_run(instance: dg.DagsterInstance, run_id: str) -> RunEvents:
    kinds = {
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        dg.DagsterEventType.STEP_FAILURE,
    }
    run = RunEvents()
    for record in instance.all_logs(run_id, of_type=kinds):
        event = record.dagster_event
        if event is None:
            continue
        data: Any = event.event_specific_data  # the event's type, checked below, says which
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = data.materialization
            run.assets[materialization.asset_key.to_user_string()] = materialization.metadata
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            run.checks.append(data)
        elif data.error is not None and data.error.cls_name == "DagsterAssetCheckFailedError":
            continue  # the failed check is reported with its own description
        elif data.user_failure_data and data.user_failure_data.description:
            run.failures.append(f"{event.step_key}: {data.user_failure_data.description}")
        elif data.error is not None:
            run.failures.append(f"{event.step_key}: {data.error.message.strip().splitlines()[0]}")
    return run


def summary(run: RunEvents, mlflow: MlflowTracking, run_id: str) -> str:
    """The run's summary: a headline, then one line per topic."""
    lines = [_headline(run)]
    lines += [line for line in (_landing(run), _model(run), _realized(run)) if line]
    lines += _checks(run)
    lines += [f"  failed: {failure}" for failure in run.failures]
    lines += _look_next(run, mlflow, run_id)
    return "\n".join(lines)


def _headline(run: RunEvents) -> str:
    scored = run.value("churn_scores", "dagster/row_count")
    if scored is not None:
        version = run.value("churn_scores", "model_version")
        done = f"{scored:,} customers scored by champion version {version} ({_how_trained(run)})"
        scored_by = run.value("churn_scores", "scored_by")
        done += f" on {scored_by}" if scored_by else ""
    elif run.failures or any(not c.passed and _blocking(c) for c in run.checks):
        done = "the run FAILED (see below); no customer was scored"
    else:
        done = "no customer was scored in this run"
    return f"Run summary: {done}."


def _how_trained(run: RunEvents) -> str:
    identical = run.value("churn_model", "identical_to_version", "none")
    kept = run.value("churn_model", "kept_version", "none")
    registered = run.value("registered_churn_model", "version")
    if "churn_model" not in run.assets:
        return "not trained in this run"
    if kept != "none":
        return f"kept: retraining not due; version {kept} stays"
    if identical != "none":
        return f"reused: identical to version {identical}"
    if registered and not run.value("registered_churn_model", "new_version", True):
        return f"trained, identical to version {registered} registered meanwhile by another run"
    return f"trained in this run, registered as version {registered}"


def _landing(run: RunEvents) -> str:
    if "bronze_transactions" not in run.assets:
        return ""
    loaded = run.value("bronze_transactions", "files_loaded", 0)
    skipped = run.value("bronze_transactions", "files_skipped", 0)
    rows = run.value("bronze_transactions", "rows_loaded", 0)
    line = f"  landing: {loaded} file(s) loaded ({rows:,} rows), {skipped} unchanged"
    ignored = run.value("raw_transactions", "ignored_file_count", 0)
    if ignored:
        line += f", {ignored} ignored (not CSV or Parquet: see raw_transactions' metadata)"
    if "silver_transactions" in run.assets:
        accepted = run.value("silver_transactions", "new_files_accepted_rows", 0)
        new_rows = run.value("silver_transactions", "new_files_rows", 0)
        reasons = run.value("silver_transactions", "new_files_rejected_by_reason", {}) or {}
        rejected = ", ".join(f"{reason} {rows:,}" for reason, rows in reasons.items())
        line += f"; silver accepted {accepted:,} of {new_rows:,} new rows"
        line += f", rejected {rejected}" if rejected else ", rejected none"
    return line


def _model(run: RunEvents) -> str:
    if "registered_churn_model" not in run.assets:
        return ""
    version = run.value("registered_churn_model", "version")
    roc_auc = run.value("registered_churn_model", "roc_auc")
    champion = run.value("registered_churn_model", "champion_version")
    role = "the champion" if run.value("registered_churn_model", "champion") else "a challenger"
    line = f"  model: version {version} is {role}, ROC AUC {roc_auc:.4f}"
    if champion == version:
        return line
    return f"{line}; " + ("there is no champion" if champion == "none" else f"the champion is version {champion}")  # fmt: skip


def _realized(run: RunEvents) -> str:
    if "churn_scores_outcomes" not in run.assets:
        return ""
    roc_auc = run.value("churn_scores_outcomes", "realized_roc_auc")
    if roc_auc is None:
        return (
            f"  realized: {run.value('churn_scores_outcomes', 'realized', 'no scoring judged yet')}"
        )
    version = run.value("churn_scores_outcomes", "realized_model_version")
    at = run.value("churn_scores_outcomes", "realized_features_as_of")
    evaluated = run.value("churn_scores_outcomes", "evaluation_roc_auc")
    against = "no evaluation recorded" if evaluated is None else f"its evaluation: {evaluated:.4f}"
    return f"  realized: version {version}'s scores as of {at}: ROC AUC {roc_auc:.4f} ({against})"


def _blocking(check) -> bool:
    return check.severity == dg.AssetCheckSeverity.ERROR


def _checks(run: RunEvents) -> list[str]:
    failed = [c for c in run.checks if not c.passed]
    if not run.checks:
        return []
    lines = [f"  checks: {len(run.checks) - len(failed)} of {len(run.checks)} passed"]
    for check in failed:
        verdict = "FAILED" if _blocking(check) else "warned"
        about = f": {check.description}" if check.description else " (see its metadata)"
        lines.append(f"  {verdict}: {check.check_name}{about}")
    return lines


def _look_next(run: RunEvents, mlflow: MlflowTracking, run_id: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    home = os.environ.get("DAGSTER_HOME")
    if home:
        dagster = (
            f"  look next: DAGSTER_HOME={home} {bin_dir / 'dagster'} dev, then "
            f"{DAGSTER_UI}/runs/{run_id}"
        )
    else:
        dagster = "  look next: set DAGSTER_HOME (e.g. $PWD/dagster_home) to keep runs for the UI"
    lines = [dagster]
    mlflow_run = run.value("churn_model", "mlflow_run")
    if mlflow.uri().startswith("sqlite:"):
        lines.append(
            f"  models: {bin_dir / 'mlflow'} ui --backend-store-uri {mlflow.server()}, then "
            f"{mlflow_run or mlflow.ui_base_url()}"
        )
    elif mlflow_run or mlflow.ui_base_url():
        lines.append(f"  models: {mlflow_run or mlflow.ui_base_url()}")
    return lines
