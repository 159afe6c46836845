"""The Kubernetes path, checked offline: no cluster and no helm here, so nothing is deployed.
What can be checked is that deploy/helm/values.yaml agrees with the code and with
deploy/dagster.yaml, and that the dagster-k8s config it implies is valid."""

import importlib
import re

import dagster as dg
import yaml

from lakehouse_assets.lib import profiles, settings
from lakehouse_assets_tests.support.services import DEPLOY_DIR


def _values() -> dict:
    return yaml.safe_load((DEPLOY_DIR / "helm" / "values.yaml").read_text())


def _user_deployment() -> dict:
    [deployment] = _values()["dagster-user-deployments"]["deployments"]
    return deployment


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_values_set_every_variable_the_prod_profile_reads():
    env = {e["name"]: e.get("value") for e in _user_deployment()["env"]}
    assert env[settings.PROFILE_ENV] == "prod"
    needed = {
        value.env_var_name
        for resource in profiles.build_resources("prod").values()
        for value in resource.__dict__.values()
        if isinstance(value, dg.EnvVar)
    }
    assert needed == {
        "LAKEHOUSE_CATALOG",
        "LAKEHOUSE_DATA_PATH",
        "LAKEHOUSE_LANDING_DIR",
        "MLFLOW_TRACKING_URI",
    }
    assert needed <= set(env)
    mount = _user_deployment()["volumeMounts"][0]["mountPath"]
    assert env["LAKEHOUSE_LANDING_DIR"].startswith(mount + "/")
    assert env["LAKEHOUSE_CATALOG"].startswith("postgres:")
    assert env["LAKEHOUSE_DATA_PATH"].startswith("s3://")


def test_values_agree_with_the_instance_yaml():
    values = _values()
    instance = yaml.safe_load((DEPLOY_DIR / "dagster.yaml").read_text())
    scheme = instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlScheme"] == scheme == "postgresql+psycopg2"
    pools = values["additionalInstanceConfig"]["concurrency"]["pools"]
    assert pools == instance["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}
    assert "postgresqlPassword" not in values["postgresql"]  # from the secret only


def test_user_code_module_is_the_code_location():
    args = _user_deployment()["dagsterApiGrpcArgs"]
    module = importlib.import_module(args[args.index("--module-name") + 1])
    assert isinstance(module.defs, dg.Definitions)


def test_run_launcher_config_validates_against_dagster_k8s():
    from dagster._config import validate_config
    from dagster_k8s import K8sRunLauncher

    launcher = _values()["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    values = launcher["config"]["k8sRunLauncher"]
    # What the chart renders into the instance's run_launcher config (camelCase -> snake_case),
    # plus the keys it adds itself.
    config = {_snake(k): v for k, v in values.items() if k != "runK8sConfig"}
    config["run_k8s_config"] = {_snake(k): v for k, v in values["runK8sConfig"].items()}
    config |= {
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
        "dagster_home": "/opt/dagster/dagster_home",
        "service_account_name": "dagster",
    }
    result = validate_config(K8sRunLauncher.config_type(), config)
    assert result.success, [e.message for e in result.errors]


def test_k8s_job_executor_location_loads_and_its_config_validates():
    from lakehouse_assets.deploy import k8s_location

    job = k8s_location.defs.resolve_job_def("refresh_lakehouse")
    assert job.executor_def.name == "lakehouse_k8s"
    executor_config = dg.validate_run_config(job, {})["execution"]["lakehouse_k8s"]
    assert executor_config["max_concurrent"] == 4
