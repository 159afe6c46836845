"""Code locations for deployments beyond one machine (docs/deployment.md).

Each module here is a whole code location: the assets, checks, jobs, sensors, schedules and
resources of `lakehouse_assets`, run by another executor. A workspace loads one of them instead
of `lakehouse_assets`, never next to it (that would define every asset twice).
"""

import dagster as dg


def with_executor(executor: dg.ExecutorDefinition) -> dg.Definitions:
    """The definitions of `lakehouse_assets`, with `executor` running their steps."""
    from lakehouse_assets import definitions

    base = definitions.defs
    return dg.Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        resources=base.resources,
        jobs=base.jobs,
        sensors=base.sensors,
        schedules=base.schedules,
        executor=executor,
    )
