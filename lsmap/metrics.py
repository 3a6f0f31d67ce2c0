"""Segmentation metrics for landslide (1) vs background (0), in two protocols.

**Whole split ("global")**: one 2x2 confusion matrix accumulated over every valid pixel of the
split, then precision, recall, F1 and IoU per class, their mean over the two classes, and pixel
accuracy. Large chips weigh more; no metric is ever undefined unless a class is absent from the
whole split.

**Per chip ("perchip", the paper's protocol, Zhao et al. 2024 section 4.2)**: each metric is computed
per chip and per class, averaged over chips, and then the landslide and background averages are
averaged. A per-chip metric whose denominator is zero is *undefined* and left out of that class's
average (a NaN-mean), never counted as 0 or 1. So a chip without landslides and without false
alarms adds nothing to the landslide precision/recall/IoU averages (it still counts for background
and for pixel accuracy); a landslide-free chip *with* false alarms adds landslide precision 0 and
IoU 0 (recall stays undefined); a landslide chip predicted all background adds landslide recall 0
and IoU 0 (precision stays undefined). ``n_chips`` per metric is reported alongside.

Confusion matrices are ``cm[truth, prediction]`` with int64 counts; pixels marked invalid (label
``IGNORE`` = 255, e.g. padding) are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

IGNORE = 255
CLASSES = ("background", "landslide")
METRICS = ("precision", "recall", "f1", "iou")


def confusion_matrix(prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
    """2x2 int64 ``cm[truth, prediction]`` over pixels whose label is 0 or 1 (255 = ignored).

    ``prediction``: any shape, values {0, 1}; ``label``: same shape, values {0, 1, 255}.
    """
    prediction = np.asarray(prediction)
    label = np.asarray(label)
    if prediction.shape != label.shape:
        raise ValueError(f"prediction {prediction.shape} and label {label.shape} differ in shape")
    valid = label != IGNORE
    codes = 2 * label[valid].astype(np.int64) + prediction[valid].astype(np.int64)
    return np.bincount(codes, minlength=4)[:4].reshape(2, 2)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else math.nan


def class_metrics(cm: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and IoU of each class; NaN where a denominator is zero."""
    out: dict[str, dict[str, float]] = {}
    total = cm.sum()
    for index, name in enumerate(CLASSES):
        tp = cm[index, index]
        fp = cm[:, index].sum() - tp
        fn = cm[index, :].sum() - tp
        out[name] = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "iou": _ratio(tp, tp + fp + fn),
        }
    out["_all"] = {"pa": _ratio(np.trace(cm), total)}
    return out


def summarise_confusion(cm: np.ndarray) -> dict[str, float]:
    """Whole-split metrics from one accumulated confusion matrix (flat dict, fractions 0..1).

    Keys: ``{precision,recall,f1,iou}_{landslide,background}``, their class means ``precision``,
    ``recall``, ``f1``, ``miou``, and ``pa`` (pixel accuracy).
    """
    per_class = class_metrics(cm)
    flat = _flatten(per_class)
    flat["pa"] = per_class["_all"]["pa"]
    return flat


def _flatten(per_class: dict[str, dict[str, float]]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for metric in METRICS:
        values = [per_class[name][metric] for name in CLASSES]
        for name, value in zip(CLASSES, values):
            flat[f"{metric}_{name}"] = value
        # class mean; NaN if either class is undefined (nanmean would hide a missing class)
        flat["miou" if metric == "iou" else metric] = float(np.mean(values))
    return flat


@dataclass
class SegmentationMeter:
    """Accumulates both protocols chip by chip: ``update(prediction, label)`` per chip."""

    confusion: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), dtype=np.int64))
    chip_metrics: list[dict[str, float]] = field(default_factory=list)

    def update(self, prediction: np.ndarray, label: np.ndarray) -> None:
        """One chip: ``prediction`` (H, W) {0,1}, ``label`` (H, W) {0,1,255}."""
        cm = confusion_matrix(prediction, label)
        if cm.sum() == 0:
            return  # a chip with no valid pixel carries no information in either protocol
        self.confusion += cm
        self.chip_metrics.append(summarise_confusion(cm))

    @property
    def n_chips(self) -> int:
        return len(self.chip_metrics)

    def global_metrics(self) -> dict[str, float]:
        return summarise_confusion(self.confusion)

    def perchip_metrics(self) -> dict[str, float]:
        """The paper's protocol: per-class NaN-means over chips, then the mean of the two classes."""
        if not self.chip_metrics:
            return {}
        out: dict[str, float] = {}
        for metric in METRICS:
            class_means = []
            for name in CLASSES:
                values = np.array([chip[f"{metric}_{name}"] for chip in self.chip_metrics])
                defined = ~np.isnan(values)
                mean = float(values[defined].mean()) if defined.any() else math.nan
                out[f"{metric}_{name}"] = mean
                out[f"n_chips_{metric}_{name}"] = int(defined.sum())
                class_means.append(mean)
            out["miou" if metric == "iou" else metric] = float(np.mean(class_means))
        out["pa"] = float(np.mean([chip["pa"] for chip in self.chip_metrics]))
        out["n_chips"] = self.n_chips
        return out

    def summary(self) -> dict[str, float]:
        """Both protocols in one flat dict: ``global_<key>`` and ``perchip_<key>``."""
        out = {f"global_{key}": value for key, value in self.global_metrics().items()}
        out.update({f"perchip_{key}": value for key, value in self.perchip_metrics().items()})
        return out
