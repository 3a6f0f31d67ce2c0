"""Metrics against hand-computed confusion matrices, in both protocols, including empty chips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsmap.metrics import IGNORE, SegmentationMeter, confusion_matrix, summarise_confusion


def test_confusion_matrix_counts_truth_by_prediction_and_skips_ignored_pixels():
    label = np.array([[0, 1, 1], [1, 0, IGNORE]], np.uint8)
    prediction = np.array([[1, 1, 0], [1, 0, 1]], np.uint8)
    # truth 0: one predicted 1 (FP), one predicted 0 (TN); truth 1: two TP, one FN; the 255 pixel is not counted
    assert confusion_matrix(prediction, label).tolist() == [[1, 1], [1, 2]]


def test_summary_matches_hand_computed_values():
    cm = np.array([[90, 10], [5, 15]])  # TN 90, FP 10, FN 5, TP 15
    m = summarise_confusion(cm)
    assert m["precision_landslide"] == pytest.approx(15 / 25)
    assert m["recall_landslide"] == pytest.approx(15 / 20)
    assert m["f1_landslide"] == pytest.approx(30 / 45)
    assert m["iou_landslide"] == pytest.approx(15 / 30)
    assert m["precision_background"] == pytest.approx(90 / 95)
    assert m["recall_background"] == pytest.approx(90 / 100)
    assert m["iou_background"] == pytest.approx(90 / 105)
    assert m["miou"] == pytest.approx((15 / 30 + 90 / 105) / 2)
    assert m["pa"] == pytest.approx(105 / 120)


def _chips():
    empty = np.zeros((4, 4), np.uint8)
    false_alarm = empty.copy()
    false_alarm[0, :2] = 1  # 2 FP on a landslide-free chip
    landslide = np.zeros((4, 4), np.uint8)
    landslide[2:, 2:] = 1
    missed_half = landslide.copy()
    missed_half[3, 2:] = 0  # 2 TP, 2 FN
    return [(empty, empty), (false_alarm, empty), (missed_half, landslide)]


def test_global_protocol_sums_one_confusion_matrix_over_chips():
    meter = SegmentationMeter()
    for prediction, label in _chips():
        meter.update(prediction, label)
    assert meter.confusion.tolist() == [[16 + 14 + 12, 2], [2, 2]]
    g = meter.global_metrics()
    assert g["iou_landslide"] == pytest.approx(2 / 6)
    assert g["pa"] == pytest.approx(44 / 48)


def test_perchip_protocol_leaves_undefined_chip_metrics_out_of_the_class_average():
    meter = SegmentationMeter()
    for prediction, label in _chips():
        meter.update(prediction, label)
    p = meter.perchip_metrics()
    # landslide IoU: chip 1 undefined (0/0), chip 2 = 0, chip 3 = 2/4
    assert p["iou_landslide"] == pytest.approx((0 + 0.5) / 2)
    assert p["n_chips_iou_landslide"] == 2
    # landslide recall: only chip 3 has landslide pixels
    assert p["recall_landslide"] == pytest.approx(0.5)
    assert p["n_chips_recall_landslide"] == 1
    # landslide precision: chip 2 (0 of 2) and chip 3 (2 of 2)
    assert p["precision_landslide"] == pytest.approx(0.5)
    # background IoU per chip: 16/16, 14/16, 12/14
    assert p["iou_background"] == pytest.approx((1 + 14 / 16 + 12 / 14) / 3)
    assert p["miou"] == pytest.approx((p["iou_background"] + p["iou_landslide"]) / 2)
    assert p["pa"] == pytest.approx((1 + 14 / 16 + 14 / 16) / 3)
    assert p["n_chips"] == 3


def test_perchip_landslide_metric_is_nan_when_no_chip_defines_it():
    meter = SegmentationMeter()
    empty = np.zeros((3, 3), np.uint8)
    meter.update(empty, empty)
    p = meter.perchip_metrics()
    assert math.isnan(p["iou_landslide"]) and math.isnan(p["miou"])
    assert p["iou_background"] == 1.0


def test_chip_with_only_ignored_pixels_counts_in_neither_protocol():
    meter = SegmentationMeter()
    meter.update(np.ones((2, 2), np.uint8), np.full((2, 2), IGNORE, np.uint8))
    assert meter.n_chips == 0 and meter.confusion.sum() == 0
