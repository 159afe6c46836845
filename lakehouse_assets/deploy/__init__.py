"""Code locations for deployments beyond one machine (docs/deployment.md).

Each module here is a whole code location: the assets, checks, jobs, sensors, schedules and
resources of `lakehouse_assets`, run by another executor. A workspace loads one of them instead
of `lakehouse_assets`, never next to it (that would define every asset twice).
"""

from lakehouse_assets.definitions import build_definitions

__all__ = ["build_definitions"]
