"""The MLflow resource: one MLflow run per Dagster run, pickled models as artifacts, and only
endpoints that MLflow 2.x servers also have."""

import hashlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from lakehouse_assets.lib import locks, settings
from lakehouse_assets.lib.model.mlflow_errors import mlflow_errors, redact
from lakehouse_assets.lib.model.mlflow_model import MODEL_FILE

if TYPE_CHECKING:  # mlflow is imported when a run starts, not with the code location
    from mlflow import MlflowClient

DAGSTER_RUN_TAG = "dagster_run_id"  # the tag dagster-mlflow's `mlflow_tracking` resource sets
MODEL_ARTIFACT_DIR = "model"
# MLflow 3's UI reads this tag to open an experiment on its training runs, not on GenAI traces;
# 3.17's UI follows its GenAI / Model training toggle instead, which a link sets with this query.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
MODEL_TRAINING_VIEW = "?workflowType=machine_learning"
LOCAL_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_stores_ready: set[str] = set()  # local sqlite stores created and migrated by this process


@dataclass(frozen=True)
class OpenRun:
    """An MLflow run that is RUNNING for the duration of one step."""

    client: "MlflowClient"
    run_id: str
    experiment_id: str
    server: str


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking and registry, used through `MlflowClient` calls that 2.x servers support.

    Follows dagster-mlflow's convention: one MLflow run per Dagster run, found by its
    `dagster_run_id` tag. Unlike it, every step ends the MLflow run it opened (FINISHED or
    FAILED), so no run is left RUNNING, and errors are classified: transient ones are retried by
    the step's RetryPolicy, deterministic ones fail at once with the endpoint and likely cause.
    MLflow's own HTTP retries are turned off so that retrying is visible in Dagster.
    """

    tracking_uri: str = Field(
        default="",
        description="Empty = $MLFLOW_TRACKING_URI, else sqlite:///$LAKEHOUSE_HOME/mlflow.db.",
    )
    experiment_name: str = "lakehouse_ml_pipeline"
    registered_model_name: str = "customer_churn"
    request_timeout_seconds: int = Field(default=30, description="Timeout of one HTTP request.")
    ui_url: str = Field(
        default="",
        description="Base URL of the MLflow UI for links; empty = the tracking URI when it is "
        "http(s), or `mlflow ui`'s default address (http://127.0.0.1:5000) for the local store.",
    )
    require_signed_models: bool = Field(
        default=False,
        description="Fail every run at its start unless $LAKEHOUSE_MODEL_SIGNING_KEY is set (the "
        "key itself is never config: it is read from the environment when used).",
    )

    def uri(self) -> str:
        return self.tracking_uri or settings.mlflow_tracking_uri()

    def server(self) -> str:
        """The tracking URI without credentials, for messages."""
        return redact(self.uri())

    def default_artifact_root(self) -> str | None:
        """Artifacts of the local sqlite store go under $LAKEHOUSE_HOME/mlartifacts."""
        if self.uri().startswith("sqlite:") and not self.tracking_uri:
            return (settings.lakehouse_home() / "mlartifacts").as_uri()
        return None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """When a run (or sensor) starts: MLflow's HTTP client reads its retry count and timeout
        from the environment only, and Dagster's RetryPolicy, not MLflow, must retry transient
        failures, so that each retry is visible in the run."""
        if self.require_signed_models and not settings.model_signing_key():
            raise dg.Failure(
                f"{settings.SIGNING_KEY_ENV} is not set: this deployment profile only trusts "
                "model pickles signed with it (docs/security.md, 'Secrets'). Set it in the "
                "environment of the run workers; never in run config.",
                allow_retries=False,
            )
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(self.request_timeout_seconds)
        os.environ.setdefault(PROGRESS_BAR_ENV, "false")  # no download bars in the run's output

    def client(self):
        from mlflow import MlflowClient

        if self.uri().startswith("sqlite:") and self.uri() not in _stores_ready:
            self._create_local_store()
        return MlflowClient(tracking_uri=self.uri(), registry_uri=self.uri())

    def _create_local_store(self) -> None:
        """Create and migrate the sqlite store under a file lock, once per process: two runs
        that start together must not both migrate it (the client migrates when it is made)."""
        from mlflow import MlflowClient

        settings.lakehouse_home().mkdir(parents=True, exist_ok=True)
        database = Path(self.uri().removeprefix("sqlite:///"))
        lock = database.with_name(database.name + ".lock")
        with locks.held(lock, "an MLflow store migration", dg.get_dagster_logger().info):
            with self.errors("create the local MLflow store"):
                client = MlflowClient(tracking_uri=self.uri(), registry_uri=self.uri())
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
        _stores_ready.add(self.uri())

    def registry_lock(self, log) -> AbstractContextManager[None]:
        """A file lock under `$LAKEHOUSE_HOME/locks`, named after the tracking URI and the
        registered model: it serializes registering among the processes of one machine (and one
        `$LAKEHOUSE_HOME`), whatever the tracking server. `registered_churn_model` also checks
        after registering, for processes this lock does not reach."""
        key = hashlib.sha256(f"{self.uri()}|{self.registered_model_name}".encode()).hexdigest()
        path = settings.lakehouse_home() / "locks" / f"registry-{key[:16]}.lock"
        return locks.held(path, f"registering a version of {self.registered_model_name!r}", log)

    def errors(self, action: str):
        """Context manager that classifies MLflow errors raised while doing `action`."""
        return mlflow_errors(action, self.server())

    def experiment_id(self, client) -> str:
        """The experiment's id, created if needed, tagged so that MLflow 3's UI shows its runs."""
        key, kind = EXPERIMENT_KIND_TAG
        with self.errors(f"find experiment {self.experiment_name!r}"):
            experiment = client.get_experiment_by_name(self.experiment_name)
            if experiment is not None:
                if key not in (experiment.tags or {}):
                    self._tag_experiment_kind(client, experiment.experiment_id)
                return experiment.experiment_id
        with self.errors(f"create experiment {self.experiment_name!r}"):
            from mlflow.exceptions import MlflowException

            try:
                return client.create_experiment(
                    self.experiment_name,
                    artifact_location=self.default_artifact_root(),
                    tags={key: kind},
                )
            except MlflowException as error:  # created meanwhile by another process
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                return client.get_experiment_by_name(self.experiment_name).experiment_id

    def _tag_experiment_kind(self, client, experiment_id: str) -> None:
        """Tag an experiment created before this version; a user who may not edit it is told."""
        from mlflow.exceptions import MlflowException

        try:
            client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND_TAG)
        except MlflowException as error:
            dg.get_dagster_logger().warning(
                f"Could not tag experiment {self.experiment_name!r} with "
                f"{EXPERIMENT_KIND_TAG[0]} (MLflow 3's UI may open it on traces): {error}"
            )

    @contextmanager
    def run_for(self, context: dg.AssetExecutionContext) -> Iterator[OpenRun]:
        """The MLflow run of this Dagster run (created on first use), open for this step."""
        client = self.client()
        experiment_id = self.experiment_id(client)
        with self.errors("find the MLflow run of this Dagster run"):
            found = client.search_runs(
                [experiment_id], filter_string=f"tags.{DAGSTER_RUN_TAG} = '{context.run_id}'"
            )
        if found:
            run_id = found[0].info.run_id
        else:
            with self.errors("create an MLflow run"):
                run_id = client.create_run(
                    experiment_id,
                    tags={DAGSTER_RUN_TAG: context.run_id, "dagster_job": context.job_name},
                    run_name=f"dagster-{context.run_id[:8]}",
                ).info.run_id
        with self.open_run(run_id, client=client) as run:
            yield run

    @contextmanager
    def open_run(self, run_id: str, client=None) -> Iterator[OpenRun]:
        """Mark `run_id` RUNNING for the block, then FINISHED, or FAILED if the block raised."""
        client = client or self.client()
        with self.errors(f"open MLflow run {run_id}"):
            run = client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
        try:
            yield OpenRun(client, run_id, run.info.experiment_id, self.server())
        except BaseException as error:
            try:
                self.end_run(client, run_id, "FAILED")
            except Exception as end_error:  # keep the original error; the failure sensor retries
                dg.get_dagster_logger().warning(
                    f"Could not end MLflow run {run_id} as FAILED after {type(error).__name__}: {end_error}"
                )
            raise
        self.end_run(client, run_id, "FINISHED")

    def end_run(self, client, run_id: str, status: str) -> None:
        with self.errors(f"end MLflow run {run_id} as {status}"):
            client.set_terminated(run_id, status=status)

    def end_runs_of_dagster_run(
        self, dagster_run_id: str, status: str = "FAILED", tags: dict[str, str] | None = None
    ) -> list[str]:
        """End every MLflow run tagged with `dagster_run_id` that is still RUNNING, and set `tags`
        on every MLflow run of that Dagster run (also those already ended). Returns the ids of the
        runs ended or tagged; creates nothing when the experiment does not exist."""
        client = self.client()
        with self.errors(f"find experiment {self.experiment_name!r}"):
            experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return []
        with self.errors("find the MLflow runs of a Dagster run"):
            runs = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.{DAGSTER_RUN_TAG} = '{dagster_run_id}'",
            )
        touched = []
        for run in runs:
            run_id = run.info.run_id
            for key, value in (tags or {}).items():
                with self.errors(f"tag MLflow run {run_id} with {key!r}"):
                    client.set_tag(run_id, key, value)
            if run.info.status == "RUNNING":
                self.end_run(client, run_id, status)
            if tags or run.info.status == "RUNNING":
                touched.append(run_id)
        return touched

    def log_model_folder(
        self, run: OpenRun, folder: Path, artifact_dir: str = MODEL_ARTIFACT_DIR
    ) -> None:
        """Upload a local MLflow model folder as the run's `artifact_dir/` (plain upload)."""
        with self.errors(f"upload the {artifact_dir}/ folder to run {run.run_id}"):
            run.client.log_artifacts(run.run_id, str(folder), artifact_path=artifact_dir)

    def download_model_pickle(self, client, run_id: str, work_dir: Path) -> bytes:
        return self.download_artifact(
            client, run_id, f"{MODEL_ARTIFACT_DIR}/{MODEL_FILE}", work_dir
        )

    def download_artifact(self, client, run_id: str, path: str, work_dir: Path) -> bytes:
        """The bytes of the run's artifact `path`, downloaded under `work_dir`."""
        # Straight from the run's artifact location: MlflowClient.download_artifacts would also
        # try 3.x-only logged-model endpoints and report any failure, 503 included, as "not found".
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        work_dir.mkdir(parents=True, exist_ok=True)
        with self.errors(f"download {path} of run {run_id}"):
            artifact_uri = client.get_run(run_id).info.artifact_uri
            repository = get_artifact_repository(artifact_uri, tracking_uri=self.uri())
            local = repository.download_artifacts(path, dst_path=str(work_dir))
        return Path(local).read_bytes()

    def ui_base_url(self) -> str | None:
        """The MLflow UI's address: `ui_url`, the tracking server, or `mlflow ui`'s default for
        the local store; None when unknown (a server URI with credentials in it)."""
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if self.uri().startswith("http"):
            return None if "@" in self.uri() else self.uri().rstrip("/")
        return LOCAL_UI_URL if self.uri().startswith("sqlite:") else None

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        base = self.ui_base_url()
        if not base:
            return None
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{MODEL_TRAINING_VIEW}"
