"""Pictures of the evaluation, as small PNGs: curves, gains, calibration, importances, histogram.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state, no display),
so rendering is safe in any worker process. Each picture is a few tens of kilobytes.
"""

import base64
import io
from pathlib import Path

import numpy as np

from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.model.metrics import CALIBRATION_BINS, feature_importances

PLOT_DIR = "plots"  # MLflow artifact folder
SIZE_INCHES, DPI = (5.0, 3.4), 80
TOP_IMPORTANCES = 15
Known = dict[str, dict[str, float]] | None  # metrics by curve name, as `ranking_metrics` names them


def new_figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _known(known: Known, name: str, metric: str) -> float | None:
    """The metric the caller passed for curve `name`, if any."""
    return (known or {}).get(name, {}).get(metric)


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def roc_curves(y, scores: dict[str, np.ndarray], known: Known = None) -> bytes:
    """`known`: each curve's `roc_auc` when the caller has it already (else computed)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, ax = new_figure()
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        auc = _known(known, name, "roc_auc")
        auc = roc_auc_score(y, score) if auc is None else auc
        ax.plot(fpr, tpr, label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance (0.500)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(loc="lower right", fontsize="small")
    return png(figure)


def precision_recall_curves(y, scores: dict[str, np.ndarray], known: Known = None) -> bytes:
    """`known`: each curve's `pr_auc` (average precision) when the caller has it already."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, ax = new_figure()
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ap = _known(known, name, "pr_auc")
        ap = average_precision_score(y, score) if ap is None else ap
        ax.plot(recall, precision, label=f"{name} ({ap:.3f})")
    ax.axhline(np.mean(y), linestyle=":", color="grey", label=f"churn rate ({np.mean(y):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve (average precision)")
    ax.legend(loc="lower left", fontsize="small")
    return png(figure)


def cumulative_gains(y, scores: dict[str, np.ndarray]) -> bytes:
    """Share of all churners reached when contacting the customers most at risk first."""
    y = np.asarray(y)
    figure, ax = new_figure()
    share = np.arange(1, len(y) + 1) / len(y)
    for name, score in scores.items():
        order = np.argsort(-np.asarray(score, dtype="float64"), kind="stable")
        ax.plot(share, np.cumsum(y[order]) / y.sum(), label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="random")
    ax.axvline(0.1, linewidth=0.8, color="grey")
    ax.set(xlabel="share of customers contacted", ylabel="share of churners reached")
    ax.set_title("Cumulative gains (line: top decile)")
    ax.legend(loc="lower right", fontsize="small")
    return png(figure)


def calibration(y, probabilities: dict[str, np.ndarray]) -> bytes:
    """Reliability curve: the churn rate in each of the equal-width probability bins the
    expected calibration error uses, against the bin's mean predicted probability."""
    from sklearn.calibration import calibration_curve

    figure, ax = new_figure()
    for name, probability in probabilities.items():
        observed, predicted = calibration_curve(
            y, probability, n_bins=CALIBRATION_BINS, strategy="uniform"
        )
        ax.plot(predicted, observed, "o-", markersize=3, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate")
    ax.set_title(f"Calibration ({CALIBRATION_BINS} equal-width bins)")
    ax.legend(loc="upper left", fontsize="small")
    return png(figure)


def feature_importance(importances: list[tuple[str, float]], kind: str) -> bytes:
    """Horizontal bars of the largest importances."""
    top = sorted(importances, key=lambda item: item[1], reverse=True)[:TOP_IMPORTANCES][::-1]
    figure, ax = new_figure()
    ax.barh([name for name, _ in top], [value for _, value in top], color="tab:blue")
    ax.tick_params(axis="y", labelsize="x-small")
    ax.set(xlabel=kind, title=f"Feature importance (top {len(top)})")
    return png(figure)


def probability_histogram(y, probability) -> bytes:
    y, probability = np.asarray(y), np.asarray(probability)
    figure, ax = new_figure()
    bins = np.linspace(0, 1, 21)
    for label, name in ((0, "retained"), (1, "churned")):
        ax.hist(probability[y == label], bins=bins, alpha=0.6, label=f"actually {name}")
    ax.set(xlabel="predicted churn probability", ylabel="customers")
    ax.set_title("Churn probability by actual class")
    ax.legend(loc="upper center", fontsize="small")
    return png(figure)


def markdown_image(name: str, png: bytes) -> str:
    """The PNG inline, as the Dagster UI renders markdown metadata."""
    return f"![{name}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def evaluation_plots(
    model, split, scores: dict[str, np.ndarray], known: Known = None
) -> dict[str, bytes]:
    """Every picture of the evaluation, by name. `scores` holds the test-split scores to compare,
    the model's churn probability first (under "model"), then the recency rule and the champion;
    those that are probabilities (all but the recency rule) go into the calibration curve.
    `known` may hold, by the same names, the `ranking_metrics` of those scores on this split
    (their ROC AUC and average precision label the curves; else they are computed)."""
    y, probability = split.y_test, scores["model"]
    probabilities = {name: s for name, s in scores.items() if name != "recency rule"}
    importances, kind = feature_importances(model, split.x_test, y)
    return {
        "roc": roc_curves(y, scores, known),
        "precision_recall": precision_recall_curves(y, scores, known),
        "cumulative_gains": cumulative_gains(y, scores),
        "calibration": calibration(y, probabilities),
        "feature_importance": feature_importance(
            list(zip(FEATURE_COLUMNS, importances, strict=True)), kind
        ),
        "probability_histogram": probability_histogram(y, probability),
    }


def log_plots(mlflow, client, run_id: str, plots: dict[str, bytes], work_dir: Path) -> None:
    """Upload each picture as `plots/<name>.png` of the run (plain artifact upload, which MLflow
    2.x servers accept)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for name, png in plots.items():
        path = work_dir / f"{name}.png"
        path.write_bytes(png)
        with mlflow.errors(f"upload {PLOT_DIR}/{path.name} to run {run_id}"):
            client.log_artifact(run_id, str(path), artifact_path=PLOT_DIR)
