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
    with mlflow.errors(f"read registered model {name!r}"):
        try:
            registered = client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
    # Read the alias from the model rather than asking for it: a missing alias is an error
    # (INVALID_PARAMETER_VALUE), which we could not tell apart from a real one.
    aliases = registered.aliases or {}
    if CHAMPION_ALIAS not in aliases:
        return None
    with mlflow.errors(f"read version {aliases[CHAMPION_ALIAS]} of {name!r}"):
        version = client.get_model_version(name, str(aliases[CHAMPION_ALIAS]))
    return Champion(str(version.version), version.run_id, (version.tags or {}).get("model_sha256"))
