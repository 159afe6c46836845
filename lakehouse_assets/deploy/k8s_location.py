"""Code location for Kubernetes with one pod per step (`k8s_job_executor` of dagster-k8s).

Only for runs launched by the `K8sRunLauncher` (deploy/helm/values.yaml): step pods inherit the
run pod's image, environment, secrets and volumes. The default code location (`lakehouse_assets`,
in-process executor, one pod per run) is the simpler cluster path and needs no shared volume
between pods; use this one when steps must spread over nodes. The lake is on PostgreSQL and S3
(`LAKEHOUSE_CATALOG`, `LAKEHOUSE_DATA_PATH`), and the `duckdb` pool (limit 1, op granularity)
keeps its writers to one pod at a time: the run pod claims a slot before it creates a step's pod.

Checked offline only (lakehouse_assets_tests/deployment/test_deploy_k8s.py); never run on a cluster here.
"""

from dagster_k8s import k8s_job_executor

from lakehouse_assets.definitions import build_definitions

defs = build_definitions(k8s_job_executor.configured({"max_concurrent": 4}, name="lakehouse_k8s"))
