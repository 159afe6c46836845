"""Jobs, sensors and schedules that refresh the lakehouse without a person clicking."""

import dagster as dg

refresh_lakehouse_job = dg.define_asset_job(
    "refresh_lakehouse", selection=dg.AssetSelection.all(), description="Every layer and the model."
)

jobs = [refresh_lakehouse_job]
sensors: list = []
schedules: list = []
