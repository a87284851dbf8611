"""Stage 4, pair: one (chosen, rejected) pair per prompt, or none with a reason.

* ``best_worst`` (SimPO's protocol, the paper's textual v0.2 data, appendix C.2):
  chosen = the highest-scored sample, rejected = the lowest-scored. Empty answers are
  left out first. Dropped, with a count per reason: ``too_few_answers`` (fewer than two
  distinct non-empty answers), ``tie`` (best score - worst score not above ``min_margin``).
* ``math`` (the paper's math data): each sample is correct/incorrect by the rule-based
  checker and has a PRM score. Problems with no correct sample are dropped
  (``no_correct``, "excessively challenging"); so are those with no incorrect one
  (``no_incorrect``: nothing to contrast). chosen = the best-scored correct sample,
  rejected = the worst-scored incorrect one, kept only when ``S_w > S_l`` (else
  ``chosen_not_higher``). With ``score.scorer: none`` there are no scores: chosen is the
  first correct sample, rejected the first incorrect one, scores 1 / 0.

Ties among equal scores go to the earliest sample, so the pairing is deterministic.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def _record(row: dict[str, Any], c: int, r: int) -> dict[str, Any]:
    scores = row["norm_scores"]
    rec = {"prompt": row["prompt"], "chosen": row["samples"][c]["text"], "rejected": row["samples"][r]["text"],
           "score_chosen": scores[c], "score_rejected": scores[r], "id": row["id"]}
    if "true_scores" in row:  # the world: the true quality, for analysis only
        rec["true_chosen"], rec["true_rejected"] = row["true_scores"][c], row["true_scores"][r]
    return rec


def best_worst(row: dict[str, Any], min_margin: float = 0.0) -> tuple[dict[str, Any] | None, str | None]:
    texts = [s["text"].strip() for s in row["samples"]]
    keep = [j for j, t in enumerate(texts) if t]
    if len({texts[j] for j in keep}) < 2:
        return None, "too_few_answers"
    scores = row["norm_scores"]
    best = max(keep, key=lambda j: (scores[j], -j))
    worst = min(keep, key=lambda j: (scores[j], j))
    if scores[best] - scores[worst] <= min_margin or texts[best] == texts[worst]:
        return None, "tie"
    return _record(row, best, worst), None


def math_rule(row: dict[str, Any], min_margin: float = 0.0) -> tuple[dict[str, Any] | None, str | None]:
    correct = [j for j, ok in enumerate(row["correct"]) if ok and row["samples"][j]["text"].strip()]
    wrong = [j for j, ok in enumerate(row["correct"]) if not ok and row["samples"][j]["text"].strip()]
    if not correct:
        return None, "no_correct"
    if not wrong:
        return None, "no_incorrect"
    scores = row["norm_scores"]
    if all(scores[j] is None for j in correct + wrong):
        rec = _record({**row, "norm_scores": [1.0 if ok else 0.0 for ok in row["correct"]]}, correct[0], wrong[0])
        return rec, None
    best = max(correct, key=lambda j: (scores[j], -j))
    worst = min(wrong, key=lambda j: (scores[j], j))
    if not scores[best] - scores[worst] > min_margin:
        return None, "chosen_not_higher"
    return _record(row, best, worst), None


def make_pairs(rows: list[dict[str, Any]], p: dict[str, Any]) -> tuple[list[dict[str, Any]], Counter]:
    """The pairs and the count of prompts dropped per reason."""
    rule = math_rule if p["rule"] == "math" else best_worst
    pairs, dropped = [], Counter()
    for row in rows:
        rec, reason = rule(row, float(p["min_margin"]))
        if rec is None:
            dropped[reason] += 1
        else:
            pairs.append(rec)
    return pairs, dropped
