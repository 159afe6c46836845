"""At training: the fitted model as ONNX, checked against the pickle on every customer of the
training and scoring features before anything is logged (a disagreement blocks registration)."""

import time
from dataclasses import dataclass

import dagster as dg

from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.metadata import log_progress, table_exists
from lakehouse_assets.lib.model import onnx_model
from lakehouse_assets.lib.model.dataset import features_at
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES, SCORING_FEATURES

BATCH_ROWS = 200_000


@dataclass(frozen=True)
class OnnxExport:
    converted: onnx_model.Converted | None  # None: not convertible, the pickle scores
    status: str  # the run's `model_onnx` tag: how it was made and checked, or why there is none
    max_abs_diff: float | None = None


def export(context, duckdb: LakehouseDuckDB, snapshot: int, model, example) -> OnnxExport:
    """Convert `model`; then compare its ONNX and pickled probabilities on every customer of the
    training features at `snapshot` and of the scoring features as they are now (when they
    exist with every feature column), and fail (final) when they differ by more than the
    tolerance. A model that cannot be converted gets one warning and no ONNX: scoring uses the
    pickle."""
    started = time.perf_counter()
    try:
        converted = onnx_model.convert(model, example)
    except onnx_model.NotConvertible as error:
        context.log.warning(
            f"No ONNX model for this {type(model).__name__}: {error}. It is logged as a pickle "
            "only, and churn_scores will score with the verified pickle (and say so)."
        )
        return OnnxExport(None, f"{onnx_model.NOT_CONVERTED}: {error}"[:500])
    scorer = converted.scorer
    columns = ", ".join(("customer_id", *FEATURE_COLUMNS))
    checked = []
    with duckdb.get_connection() as conn:
        tables = [(CUSTOMER_FEATURES, features_at(snapshot))]
        if _has_features(conn, SCORING_FEATURES):  # the customers scored now (latest snapshot)
            tables.append((SCORING_FEATURES, SCORING_FEATURES))
        for table, source in tables:
            batches = conn.sql(f"SELECT {columns} FROM {source}").to_arrow_reader(BATCH_ROWS)
            checked.append((table, onnx_model.parity(model, scorer, batches)))
    worst_table, parity = max(checked, key=lambda checked: checked[1].max_abs_diff)
    customers = sum(p.customers for _, p in checked)
    log_progress(context, "ONNX compared with the pickle on", customers, started)
    where = " and ".join(f"{p.customers:,} customers of {table}" for table, p in checked)
    if customers == 0:
        raise dg.Failure(
            f"No customer to compare the ONNX model with the pickle on: {CUSTOMER_FEATURES} "
            "(at the training snapshot) and the scoring features are empty.",
            allow_retries=False,
        )
    if not parity.max_abs_diff <= onnx_model.PARITY_TOLERANCE:  # NaN fails too
        raise dg.Failure(
            f"The ONNX conversion of this {type(model).__name__} ({converted.precision} "
            f"precision) disagrees with the pickle: churn probabilities differ by up to "
            f"{parity.max_abs_diff:.3g} (customer {parity.worst_customer} of {worst_table}) over "
            f"{where}, more than {onnx_model.PARITY_TOLERANCE:g}. Nothing was logged or "
            "registered: scores "
            "would depend on the runtime. Report the model type and data; another model_type "
            "trains a model that converts.",
            metadata={"max_abs_diff": parity.max_abs_diff, "customers": customers},
            allow_retries=False,
        )
    status = (
        f"{onnx_model.ONNX_ARTIFACT_DIR}/{onnx_model.ONNX_FILE}: {converted.precision} "
        f"precision; max |ONNX - pickle| {parity.max_abs_diff:.1e} over {where}"
    )
    context.log.info(f"ONNX model: {status}")
    return OnnxExport(converted, status, parity.max_abs_diff)


def _has_features(conn, table: str) -> bool:
    """Whether `table` exists with every feature column (a table from before a feature was added
    is not compared; it is rebuilt before it is scored)."""
    if not table_exists(conn, table):
        return False
    columns = {c[0] for c in conn.execute(f"SELECT * FROM {table} LIMIT 0").description}
    return set(FEATURE_COLUMNS) <= columns
