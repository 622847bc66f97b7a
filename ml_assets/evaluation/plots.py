"""Evaluation plots as PNG files: scikit-learn's ROC, precision-recall, confusion-matrix and
calibration displays, and a feature-importance bar chart. Every figure is drawn on its own Agg canvas
outside pyplot (no global state, safe in threads). matplotlib and scikit-learn load inside the
functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml_assets.evaluation.metrics import labels_array, scores_array

PLOT_DPI = 100


def new_axes(width: float = 5.0, height: float = 4.0) -> Any:
    """Axes of a new figure on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def save(ax: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = ax.figure
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=PLOT_DPI)
    fig.clf()  # not registered with pyplot: clearing releases it
    return out


def curve_plot(display: Any, title: str, y: Any, p: Any, path: str | Path, label: str) -> Path:
    """A scikit-learn curve display (``from_predictions``) with its chance level, saved as PNG."""
    yy = labels_array(y)
    ax = new_axes()
    display.from_predictions(yy, scores_array(p, len(yy)), name=label, ax=ax, plot_chance_level=True)
    ax.set(title=title)
    return save(ax, path)


def plot_roc(y: Any, p: Any, path: str | Path, label: str = "model") -> Path:
    """ROC curve with the AUC in the legend and the chance line."""
    from sklearn.metrics import RocCurveDisplay

    return curve_plot(RocCurveDisplay, "ROC curve", y, p, path, label)


def plot_pr(y: Any, p: Any, path: str | Path, label: str = "model") -> Path:
    """Precision-recall curve with average precision and the prevalence line."""
    from sklearn.metrics import PrecisionRecallDisplay

    return curve_plot(PrecisionRecallDisplay, "Precision-recall curve", y, p, path, label)


def plot_confusion(y: Any, pred: Any, path: str | Path) -> Path:
    """Confusion matrix (rows: actual, columns: predicted), counts and shares of each actual class."""
    from sklearn.metrics import ConfusionMatrixDisplay

    ax = new_axes(4.6, 3.8)
    ConfusionMatrixDisplay.from_predictions(
        labels_array(y), labels_array(pred), labels=[0, 1], normalize=None, ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set(title="Confusion matrix")
    return save(ax, path)


def plot_calibration(y: Any, p: Any, path: str | Path, bins: int = 10) -> Path:
    """Reliability diagram (observed rate against mean predicted probability per bin)."""
    from sklearn.calibration import CalibrationDisplay

    from ml_assets.evaluation.metrics import expected_calibration_error

    yy = labels_array(y)
    pp = scores_array(p, len(yy))
    ax = new_axes(5.0, 5.0)
    CalibrationDisplay.from_predictions(
        yy, pp, n_bins=bins, strategy="uniform", ax=ax, name=f"model (ECE {expected_calibration_error(yy, pp, bins):.3f})"
    )
    ax.set(title="Calibration")
    return save(ax, path)


def plot_feature_importance(names: Sequence[str], values: Sequence[float], path: str | Path, top: int = 20) -> Path:
    """Horizontal bars of the ``top`` features by absolute importance, largest at the top."""
    names = [str(name) for name in names]
    vals = [float(value) for value in values]
    if len(names) != len(vals):
        raise ValueError("names and values must have the same length")
    ranked = sorted(zip(names, vals, strict=True), key=lambda item: (-abs(item[1]), item[0]))[:top]
    ranked.reverse()
    ax = new_axes(6.0, max(2.0, 0.3 * len(ranked) + 1.0))
    ax.barh([name for name, _ in ranked], [value for _, value in ranked], color="tab:blue")
    ax.set(xlabel="Importance", title=f"Feature importance (top {len(ranked)})")
    return save(ax, path)
