"""Reading what an upstream model asset recorded in its latest materialization."""

import dagster as dg


def latest_metadata(context: dg.AssetExecutionContext, asset: str) -> dict:
    """Raw metadata values of the latest materialization of `asset`; fails if there is none."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(
            f"{asset} has never been materialized; materialize it first.", allow_retries=False
        )
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
