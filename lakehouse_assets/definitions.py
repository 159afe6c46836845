"""The code location: the assets, checks, jobs, sensors and schedules found in `defs/`, with the
resources and the executor that run them."""

import importlib
import warnings
from pathlib import Path

import dagster as dg

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.profiles import build_resources

PACKAGE = Path(__file__).parent


def load_defs_folder() -> dg.Definitions:
    """Every definition in `lakehouse_assets/defs/`, loaded as `dg.load_from_defs_folder` loads a
    project's, but found from the package itself: installed from a wheel, it has no
    pyproject.toml above it for `load_from_defs_folder` to read."""
    tree = dg.ComponentTree(
        defs_module=importlib.import_module("lakehouse_assets.defs"),
        project_root=PACKAGE.parent,
        code_location_name="lakehouse_assets",
    )
    with warnings.catch_warnings():  # as load_from_defs_folder: its internals are in preview
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        return tree.build_defs()


def build_definitions(executor: dg.ExecutorDefinition = dg.in_process_executor) -> dg.Definitions:
    """The code location, with `executor` running its steps. By default they run one after
    another in the run's own process: a process per step would cost more than most steps
    themselves. The Celery and Kubernetes locations (`lakehouse_assets.deploy`) pass their own;
    their steps each set the resources up in a process of their own, so the run lock, which
    would make them wait for each other, is off (the `duckdb` pool keeps lake writers apart),
    and the values steps pass each other go to `$LAKEHOUSE_HOME/dagster_io`, on the volume
    every step mounts (read when the location loads)."""
    one_process = executor is dg.in_process_executor
    resources = build_resources(run_lock=one_process)
    if not one_process:  # what the fan-out's steps pass each other, where every step finds it
        resources["io_manager"] = dg.FilesystemIOManager(
            base_dir=str(settings.lakehouse_home() / "dagster_io")
        )
    return dg.Definitions.merge(
        load_defs_folder(), dg.Definitions(resources=resources, executor=executor)
    )


defs = build_definitions()
