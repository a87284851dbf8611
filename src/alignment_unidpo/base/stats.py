"""Small statistics shared by the trainer's logs, the world's metrics, the plots, the study and sweeps."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tensors in, a float out: the module itself needs no torch
    import torch


def spearman_rho(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation (ties broken by position; fine for continuous values)."""
    if x.numel() < 2:
        return float("nan")
    rx = x.argsort().argsort().double()
    ry = y.argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = (rx.norm() * ry.norm()).item()
    return float((rx @ ry).item() / denom) if denom > 0 else float("nan")


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a Student-t interval for the mean of ``values`` (e.g. one metric over
    seeds); NaN bounds with fewer than two values."""
    from scipy import stats  # only the study and sweeps need scipy

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of paired differences: a Student-t interval over the pairs (seeds)."""
    return mean_interval(diffs, level)
