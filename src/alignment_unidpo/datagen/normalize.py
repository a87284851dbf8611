"""Stage 3, normalise: put every sample's score on the scale the loss expects.

* ``none``: as scored (GPT-4o 1-10 ratings, the world judge's 0-10).
* ``linear``: ``scale * s + offset``.
* ``zscore_cdf``: the paper's footnote 4 for ArmoRM, a regression reward model whose
  scores have no fixed range: z-score "after scoring all entries in the dataset"
  (population mean and standard deviation), then ``10 * Phi(z)`` with the standard
  normal CDF ``Phi(z) = (1 + erf(z / sqrt 2)) / 2``, so scores land on 0-10 like v0.1's.
  Which entries the footnote means is not said; ``over`` picks:

  - ``answers`` (the default): every sampled answer's score. The pair rule then reads the
    normalised scores (:func:`normalize_rows`).
  - ``pairs``: the chosen and rejected scores of the pairs only. This stage passes the
    scores through as scored, the pair rule reads them, and the pipeline then normalises
    the pairs' scores (:func:`normalize_pairs`).

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
    return zscore_cdf_with(values, mean, sd), {"mean": mean, "sd": sd}


def zscore_cdf_with(values: list[float], mean: float, sd: float) -> list[float]:
    """``10 * Phi((s - mean) / sd)`` with a given mean and sd (sd 0: every score maps to 5)."""
    if sd == 0:
        return [5.0] * len(values)
    return [10.0 * normal_cdf((v - mean) / sd) for v in values]


def normalize_scores(values: list[float], n: dict[str, Any]) -> tuple[list[float], dict[str, float]]:
    method = n["method"]
    if method == "none":
        return list(values), {}
    if method == "linear":
        return [float(n["scale"]) * v + float(n["offset"]) for v in values], {}
    return zscore_cdf(values)


def over_pairs(n: dict[str, Any]) -> bool:
    """Whether the normalisation is fit on the pairs' scores (``over: pairs``), after pairing."""
    return n.get("over", "answers") == "pairs"


def normalize_rows(rows: list[dict[str, Any]], n: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows with ``norm_scores`` beside ``scores`` (None stays None: the verifier-only math rule);
    with ``over: pairs``, the scores as scored (the pairs are normalised after pairing)."""
    flat = [s for r in rows for s in r["scores"] if s is not None]
    if over_pairs(n):
        return [{**r, "norm_scores": list(r["scores"])} for r in rows], {"over": "pairs"}
    normed, params = normalize_scores(flat, n) if flat else ([], {})
    it = iter(normed)
    out = [{**r, "norm_scores": [None if s is None else next(it) for s in r["scores"]]} for r in rows]
    return out, params


def normalize_pairs(pairs: list[dict[str, Any]], n: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``over: pairs``: the method fit on the chosen and rejected scores of the pairs alone and
    applied to them (``score_chosen``, ``score_rejected``)."""
    flat = [x for p in pairs for x in (p["score_chosen"], p["score_rejected"])]
    normed, params = normalize_scores(flat, n)
    out = [{**p, "score_chosen": normed[2 * i], "score_rejected": normed[2 * i + 1]} for i, p in enumerate(pairs)]
    return out, {"over": "pairs", **params}


def rescale_like_pairs(rows: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every answer's score on the pairs' scale (``over: pairs``; the score histogram and plot)."""
    return [{**r, "norm_scores": [None if s is None else v for s, v in
                                  zip(r["scores"], zscore_cdf_with([0.0 if s is None else s for s in r["scores"]],
                                                                   params["mean"], params["sd"]))]} for r in rows]
