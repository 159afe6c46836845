"""Realized performance: past scores against what the customers did over the horizon after."""

from dataclasses import astuple, dataclass, fields, replace
from datetime import datetime

import pyarrow as pa

from lakehouse_assets.lib.model.metrics import ranking_metrics
from lakehouse_assets.lib.model.plots import new_figure, png
from lakehouse_assets.lib.sql import sql

REALIZED_ROC_AUC_MARGIN = 0.05  # below the evaluation's ROC AUC by more: the check warns
SCORINGS_SQL = sql("scores/scorings")
LABELS_SQL = sql("scores/realized_labels")


@dataclass(frozen=True)
class Scoring:
    """One past scoring (a features' cutoff and a model version) and, once the data cover its
    horizon, how its scores turned out."""

    features_as_of: datetime
    model_version: str
    scored_at: datetime
    customers: int
    evaluation_roc_auc: float | None
    covered_from: datetime
    covered: bool
    churn_rate: float | None = None
    mean_probability: float | None = None
    roc_auc: float | None = None
    brier: float | None = None
    top_decile_capture: float | None = None

    def row(self) -> tuple:
        return astuple(self)


# gold.churn_scores_outcomes' columns: the fields of a Scoring, in order.
COLUMNS = tuple(f.name for f in fields(Scoring))
SCHEMA = pa.schema(
    [
        ("features_as_of", pa.timestamp("us")),
        ("model_version", pa.string()),
        ("scored_at", pa.timestamp("us")),
        ("customers", pa.int64()),
        ("evaluation_roc_auc", pa.float64()),
        ("covered_from", pa.timestamp("us")),
        ("covered", pa.bool_()),
        *((name, pa.float64()) for name in COLUMNS[7:]),
    ]
)


def realized(conn, horizon_days: int) -> list[Scoring]:
    """Every scoring in the history, those the data cover with their realized figures: ROC AUC,
    Brier score and top-decile capture of the scores given then, against the labels now known."""
    scorings = []
    for values in conn.execute(SCORINGS_SQL, {"horizon_days": horizon_days}).fetchall():
        scoring = Scoring(*values)
        if scoring.covered:
            scoring = _with_outcomes(conn, scoring, horizon_days)
        scorings.append(scoring)
    return scorings


def _with_outcomes(conn, scoring: Scoring, horizon_days: int) -> Scoring:
    from sklearn.metrics import brier_score_loss

    labelled = conn.execute(
        LABELS_SQL,
        {
            "features_as_of": scoring.features_as_of,
            "model_version": scoring.model_version,
            "horizon_days": horizon_days,
        },
    ).fetchnumpy()
    y, probability = labelled["churned"].astype(int), labelled["churn_probability"].astype(float)
    both_classes = 0 < y.sum() < len(y)  # otherwise no ranking can be judged
    ranking = ranking_metrics(y, probability) if both_classes else {}
    return replace(
        scoring,
        churn_rate=float(y.mean()),
        mean_probability=float(probability.mean()),
        roc_auc=ranking.get("roc_auc"),
        brier=float(brier_score_loss(y, probability, labels=[0, 1])),
        top_decile_capture=ranking.get("top_decile_capture"),
    )


def as_arrow(scorings: list[Scoring]) -> pa.Table:
    """The scorings as `gold.churn_scores_outcomes`' rows (typed even when there are none)."""
    return pa.Table.from_pylist(
        [dict(zip(COLUMNS, s.row(), strict=True)) for s in scorings], SCHEMA
    )


def realized_roc_auc_plot(scorings: list[Scoring]) -> bytes:
    """The realized ROC AUC of each judged scoring by its features' cutoff, labelled with the
    version that scored, against the ROC AUC that version's evaluation recorded and the line
    the check warns below."""
    judged = sorted((s for s in scorings if s.roc_auc is not None), key=lambda s: s.features_as_of)
    at = [s.features_as_of for s in judged]
    figure, ax = new_figure()
    ax.plot(at, [s.roc_auc for s in judged], "o-", label="realized")
    evaluated = [
        s.evaluation_roc_auc if s.evaluation_roc_auc is not None else float("nan") for s in judged
    ]
    ax.plot(at, evaluated, "x--", color="grey", label="evaluation of the version")
    floor = [e - REALIZED_ROC_AUC_MARGIN for e in evaluated]
    ax.plot(
        at,
        floor,
        ":",
        color="tab:red",
        label=f"warns below (evaluation - {REALIZED_ROC_AUC_MARGIN})",
    )
    for s in judged:
        ax.annotate(
            f"v{s.model_version}",
            (s.features_as_of, s.roc_auc),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize="x-small",
        )
    ax.margins(y=0.15)
    ax.set(
        xlabel="scores' features as of", ylabel="ROC AUC", title="Realized ROC AUC of past scores"
    )
    ax.tick_params(axis="x", labelsize="x-small", labelrotation=20)
    ax.legend(loc="lower right", fontsize="x-small")
    return png(figure)


def no_figures_yet(scorings: list[Scoring], latest_event) -> str:
    """Why no scoring has realized figures yet, naming the first that will."""
    if not scorings:
        return "No scoring in the history yet: materialize churn_scores."
    if any(s.covered for s in scorings):
        return (
            "The covered scorings' customers all churned, or none did: no ROC AUC to compare "
            "(see by_scoring)."
        )
    first = min(scorings, key=lambda s: s.covered_from)
    return (
        f"No scoring is covered yet: the earliest (features as of {first.features_as_of}, "
        f"version {first.model_version}) is judged once the data reach {first.covered_from}; "
        f"they reach {latest_event}."
    )
