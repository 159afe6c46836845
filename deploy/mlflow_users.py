"""Create the MLflow users of a basic-auth server and give the pipeline its write access.

Run once as the MLflow admin (idempotent: existing users and objects are kept, passwords are
not changed):

    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=$MLFLOW_AUTH_ADMIN_PASSWORD \\
    MLFLOW_PIPELINE_PASSWORD=... MLFLOW_READER_PASSWORD=... \\
    python deploy/mlflow_users.py http://mlflow.internal:5000

* `pipeline` (MLFLOW_PIPELINE_USERNAME): EDIT on the experiment `lakehouse_ml_pipeline` and the
  registered model `customer_churn`, which this script creates if missing. Its password goes
  to the Dagster run workers as MLFLOW_TRACKING_USERNAME/PASSWORD.
* `reader` (MLFLOW_READER_USERNAME, optional): no grant, so the server's default_permission
  (READ, deploy/mlflow/basic_auth.ini) applies: it sees runs and models and changes nothing.

Passwords are read from the environment and never printed.
"""

import argparse
import os
import sys

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

EXPERIMENT = "lakehouse_ml_pipeline"
REGISTERED_MODEL = "customer_churn"


def ensure_user(auth, username: str, password: str) -> str:
    try:
        auth.create_user(username, password)
        return "created"
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return "exists"


def ensure_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name, description="Customer churn classifier")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("--experiment", default=EXPERIMENT)
    parser.add_argument("--registered-model", default=REGISTERED_MODEL)
    args = parser.parse_args(argv)
    for name in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_PIPELINE_PASSWORD",
    ):
        if not os.environ.get(name):
            print(f"mlflow_users: set {name}", file=sys.stderr)
            return 2
    auth = get_app_client("basic-auth", tracking_uri=args.tracking_uri)
    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    pipeline = os.environ.get("MLFLOW_PIPELINE_USERNAME", "pipeline")
    print(f"user {pipeline}: {ensure_user(auth, pipeline, os.environ['MLFLOW_PIPELINE_PASSWORD'])}")
    if os.environ.get("MLFLOW_READER_PASSWORD"):
        reader = os.environ.get("MLFLOW_READER_USERNAME", "reader")
        print(f"user {reader}: {ensure_user(auth, reader, os.environ['MLFLOW_READER_PASSWORD'])}")
    experiment_id = ensure_experiment(client, args.experiment)
    ensure_registered_model(client, args.registered_model)
    auth.grant_user_permission(pipeline, "experiment", experiment_id, "EDIT")
    auth.grant_user_permission(pipeline, "registered_model", args.registered_model, "EDIT")
    print(
        f"{pipeline}: EDIT on experiment {args.experiment!r} ({experiment_id}) and registered "
        f"model {args.registered_model!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
