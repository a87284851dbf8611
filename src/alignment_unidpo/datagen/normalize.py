"""Stage 3, normalise: put every sample's score on the scale the loss expects.

* ``none``: as scored (GPT-4o 1-10 ratings, the world judge's 0-10).
* ``linear``: ``scale * s + offset``.
* ``zscore_cdf``: the paper's footnote 4 for ArmoRM, a regression reward model whose
  scores have no fixed range: z-score over *all* scored samples of the data set
  (population mean and standard deviation), then ``10 * Phi(z)`` with the standard
  normal CDF ``Phi(z) = (1 + erf(z / sqrt 2)) / 2``, so scores land on 0-10 like v0.1's.

This stage needs the whole set at once (the z-score's mean and sd), so it writes one
file, atomically; it is cheap next to generation and scoring.
"""

from __future__ import annotations

import math
from typing import Any

from ..base.errors import DataGenError


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def zscore_cdf(values: list[float]) -> tuple[list[float], dict[str, float]]:
    """``10 * Phi((s - mean) / sd)`` for every score; all-equal scores map to 5."""
    if not values:
        raise DataGenError("normalize: no scores to normalise")
    mean = math.fsum(values) / len(values)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    if sd == 0:
        return [5.0] * len(values), {"mean": mean, "sd": 0.0}
    return [10.0 * normal_cdf((v - mean) / sd) for v in values], {"mean": mean, "sd": sd}


def normalize_scores(values: list[float], n: dict[str, Any]) -> tuple[list[float], dict[str, float]]:
    method = n["method"]
    if method == "none":
        return list(values), {}
    if method == "linear":
        return [float(n["scale"]) * v + float(n["offset"]) for v in values], {}
    return zscore_cdf(values)


def normalize_rows(rows: list[dict[str, Any]], n: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows with ``norm_scores`` beside ``scores`` (None stays None: the verifier-only math rule)."""
    flat = [s for r in rows for s in r["scores"] if s is not None]
    normed, params = normalize_scores(flat, n) if flat else ([], {})
    it = iter(normed)
    out = [{**r, "norm_scores": [None if s is None else next(it) for s in r["scores"]]} for r in rows]
    return out, params
