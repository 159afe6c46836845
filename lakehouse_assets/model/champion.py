"""The registered model's current `champion` version, if there is one."""

from dataclasses import dataclass

from lakehouse_assets.model.mlflow_resource import MlflowTracking

CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    sha256: str | None


def current_champion(mlflow: MlflowTracking, client) -> Champion | None:
    """The version the `champion` alias points at; None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    name = mlflow.registered_model_name
    with mlflow.errors(f"look up alias {CHAMPION_ALIAS!r} of registered model {name!r}"):
        try:
            version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            raise
    return Champion(str(version.version), version.run_id, (version.tags or {}).get("model_sha256"))
