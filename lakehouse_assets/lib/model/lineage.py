"""Reading what an upstream model asset recorded: in this run if it ran here, else its latest."""

import dagster as dg


def upstream_metadata(context: dg.AssetExecutionContext, asset: str) -> dict:
    """Raw metadata values of `asset`'s materialization in this Dagster run, or, when it did not
    run here (an ad-hoc materialization), of its latest one. Fails if there is none.

    Looking in this run first keeps two overlapping refresh runs from evaluating or registering
    each other's model."""
    key = dg.AssetKey(asset)
    records = context.instance.get_records_for_run(
        context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    events = [
        r.event_log_entry.asset_materialization
        for r in records
        if r.event_log_entry.asset_materialization
        and r.event_log_entry.asset_materialization.asset_key == key
    ]
    if events:
        materialization = events[-1]
    else:
        latest = context.instance.get_latest_materialization_event(key)
        if latest is None or latest.asset_materialization is None:
            raise dg.Failure(
                f"{asset} has never been materialized; materialize it first.", allow_retries=False
            )
        materialization = latest.asset_materialization
    return {k: v.value for k, v in materialization.metadata.items()}
