"""The code location: the assets, checks, jobs, sensors and schedules found in `defs/`, with the
resources and the executor that run them."""

from pathlib import Path

import dagster as dg

from lakehouse_assets.lib.profiles import build_resources


def build_definitions(executor: dg.ExecutorDefinition = dg.in_process_executor) -> dg.Definitions:
    """The code location, with `executor` running its steps. By default they run one after
    another in the run's own process: a process per step would cost more than most steps
    themselves. The Celery and Kubernetes locations (`lakehouse_assets.deploy`) pass their own."""
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources=build_resources(), executor=executor),
    )


defs = build_definitions()
