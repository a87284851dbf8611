"""Stage 4, pair: chosen and rejected answers of each prompt, or none with a reason.

* ``best_worst`` (SimPO's protocol, the paper's textual v0.2 data, appendix C.2):
  chosen = the highest-scored sample, rejected = the lowest-scored. Empty answers are
  left out first. Dropped, with a count per reason: ``too_few_answers`` (fewer than two
  distinct non-empty answers), ``tie`` (best score - worst score not above ``min_margin``).
* ``best_correct_worst_incorrect`` (called ``math`` before; our reading of the paper's
  text, appendix C.2): each sample is correct/incorrect by the rule-based checker and has a
  PRM score. Problems with no correct sample are dropped (``no_correct``, "excessively
  challenging"); so are those with no incorrect one (``no_incorrect``: nothing to
  contrast). chosen = the best-scored correct sample, rejected = the worst-scored incorrect
  one, kept only when ``S_w > S_l`` (else ``chosen_not_higher``). One pair per problem.
  With ``score.scorer: none`` there are no scores: chosen is the first correct sample,
  rejected the first incorrect one, scores 1 / 0.
* ``authors``: the rule of the authors' ``Math/data_generation/scripts/get_uni_dpo_data.py``
  with ``generate_data.sh``'s settings (reward min, positive strategy max, negative strategy
  positive, score margin 0), and the answer filters before it (:func:`authors_rule`).

Ties among equal scores go to the earliest sample, so the pairing is deterministic; the
authors' random choices are drawn from a generator seeded by ``pair.seed`` and the prompt's
id, so they do not depend on the other prompts, the shards or the processes.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

from ..base.errors import DataGenError
from ..generation.math_grading import extract_answer


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


def best_correct_worst_incorrect(row: dict[str, Any],
                                 min_margin: float = 0.0) -> tuple[dict[str, Any] | None, str | None]:
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


math_rule = best_correct_worst_incorrect  # the rule's name before it was named for what it does


# --- the authors' rule -----------------------------------------------------------------------
# get_uni_dpo_data.py (pspdada/Uni-DPO c29535e): construct_dataset passes over the problems
# while try_cnt <= TRY_MAX_CNT (200), i.e. 201 passes, then lowers score_margin by 0.5 and
# starts again while it stays above 0 (lines 23, 127-190).
AUTHORS_PASSES = 201
AUTHORS_MARGIN_STEP = 0.5

# Answer-level drop reasons (counts of answers) and the count of pairs cut by the cap; the
# other reasons in ``dropped`` count prompts left without a pair.
ANSWERS_OVERLONG, ANSWERS_WITHOUT_ANSWER = "answers_overlong", "answers_without_answer"
PAIRS_OVER_CAP = "pairs_over_cap"


def authors_margins(min_margin: float) -> list[float]:
    """The score margins the authors' loop tries in turn: ``min_margin``, then 0.5 less while above 0."""
    margins, m = [min_margin], min_margin - AUTHORS_MARGIN_STEP
    while m > 0:
        margins.append(m)
        m -= AUTHORS_MARGIN_STEP
    return margins


def authors_rule(row: dict[str, Any], p: dict[str, Any]) -> tuple[list[tuple[tuple[int, int], int, int]],
                                                                    str | None, Counter]:
    """One problem under the authors' rule: its pairs as ``((round, pass), chosen, rejected)``
    sample indices, in the order their loop makes them; the reason it has none (else None);
    the answers dropped before pairing, per reason.

    Before pairing, as their scripts do: an answer whose prompt + answer tokens exceed
    ``max_tokens`` is dropped (gen_samples.py:152-157; a problem left with none:
    ``all_overlong``); a problem with no correct answer (``no_correct``,
    verifiable_reward_labeling.py:61-64); an answer with no extractable final answer
    (verifiable_reward_labeling.py:66-74; extracted here by the verifier's own
    :func:`~alignment_unidpo.generation.math_grading.extract_answer`).

    Then each pass over the problem (get_uni_dpo_data.py:57-96, 128-183): chosen = the
    best-scored correct answer scoring above ``chosen_above`` (``> 6``; the first on a tie;
    none: the problem is done, ``below_threshold`` if it made no pair); rejected = a random
    *correct* answer scoring at most chosen - margin (lower **or equal**), else a random
    *incorrect* one scoring at most that (none: done, ``nothing_lower``); both leave the pool,
    and the next pass pairs what remains. As written, their correct candidates include the
    chosen answer itself (its score is <= its own): ``self_pairs: true`` keeps that (a pair of
    an answer with itself, after which their ``del`` at the same position twice removes the
    answer and the one after it); by default the chosen answer is not its own rejected.
    """
    samples, correct, scores = row["samples"], row["correct"], row["norm_scores"]
    n, dropped = len(samples), Counter()
    if p["max_tokens"] is None:
        overlong = [False] * n
    else:
        if "prompt_tokens" not in row:
            raise DataGenError(f"prompt {row['id']}: pair.max_tokens counts prompt + answer tokens, and the row has no "
                               "prompt_tokens (the pipeline counts them with the policy's tokenizer)")
        overlong = [int(row["prompt_tokens"]) + int(s.get("num_tokens", 0)) > int(p["max_tokens"]) for s in samples]
    dropped[ANSWERS_OVERLONG] += sum(overlong)
    kept = [j for j in range(n) if not overlong[j]]
    answered = [j for j in kept if extract_answer(samples[j]["text"])[0] != ""]
    dropped[ANSWERS_WITHOUT_ANSWER] += len(kept) - len(answered)
    if not kept:
        return [], "all_overlong", dropped
    if not any(correct[j] for j in kept):
        return [], "no_correct", dropped
    if any(scores[j] is None for j in answered):
        raise DataGenError(f"prompt {row['id']}: pair.rule: authors needs a score for every answer (score.scorer)")
    rng = random.Random(f"{p['seed']}:{row['id']}")
    self_pairs = bool(p["self_pairs"])
    above = float(p["chosen_above"])
    pool, pairs, reason = list(answered), [], None
    for round_no, margin in enumerate(authors_margins(float(p["min_margin"]))):
        for pass_no in range(AUTHORS_PASSES):
            candidates = [j for j in pool if correct[j] and scores[j] > above]
            if not candidates:
                reason = reason or "below_threshold"
                break
            c = max(candidates, key=lambda j: scores[j])  # the first of equal scores, as max() in their code
            limit = scores[c] - margin
            lower = [j for j in pool if correct[j] and scores[j] <= limit and (self_pairs or j != c)]
            if not lower:
                lower = [j for j in pool if not correct[j] and scores[j] <= limit]
            if not lower:
                reason = reason or "nothing_lower"
                break
            r = rng.choice(lower)
            if scores[c] < scores[r]:  # their check (line 151); unreachable with a margin >= 0
                break
            pairs.append(((round_no, pass_no), c, r))
            where = pool.index(c)
            if c == r:  # del item[...][idx] twice at one index: the answer and the one after it
                del pool[where:where + 2]
            else:
                pool.remove(c)
                pool.remove(r)
    return pairs, (None if pairs else reason or "nothing_lower"), dropped


def authors_order(seed: int, row_id: Any) -> str:
    """A problem's place in the seeded order the cap is applied in: a hash of the seed and its
    id, so it depends on neither the shards nor the processes nor the other problems."""
    return hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()


def authors_pairs(rows: list[dict[str, Any]], p: dict[str, Any]) -> tuple[list[dict[str, Any]], Counter]:
    """Every problem under :func:`authors_rule`, then the cap: the pairs of the first pass over
    all problems (in the seeded order), then the second pass's, ..., up to ``max_pairs``, as
    their loop makes them. A problem whose pairs were all cut counts as ``cap``; the pairs cut,
    as ``pairs_over_cap``."""
    dropped, made = Counter(), []
    ordered = sorted(rows, key=lambda r: authors_order(p["seed"], r["id"]))
    for position, row in enumerate(ordered):
        pairs, reason, answers = authors_rule(row, p)
        dropped.update(answers)
        if reason is not None:
            dropped[reason] += 1
        made += [(step, position, row, c, r) for step, c, r in pairs]
    made.sort(key=lambda x: (x[0], x[1]))
    cap = len(made) if p["max_pairs"] is None else int(p["max_pairs"])
    kept, cut = made[:cap], made[cap:]
    if cut:
        dropped[PAIRS_OVER_CAP] += len(cut)
        dropped["cap"] += len({position for _, position, *_ in cut} - {position for _, position, *_ in kept})
    out = []
    for _, _, row, c, r in kept:
        rec = _record(row, c, r)
        rec["correct_chosen"], rec["correct_rejected"] = bool(row["correct"][c]), bool(row["correct"][r])
        out.append(rec)
    return out, Counter({k: v for k, v in dropped.items() if v})


def make_pairs(rows: list[dict[str, Any]], p: dict[str, Any]) -> tuple[list[dict[str, Any]], Counter]:
    """The pairs and the drops per reason: prompts left without a pair (and, for the authors'
    rule, answers dropped before pairing and pairs cut by the cap, under their own names)."""
    if p["rule"] == "authors":
        return authors_pairs(rows, p)
    rule = best_correct_worst_incorrect if p["rule"] in ("best_correct_worst_incorrect", "math") else best_worst
    pairs, dropped = [], Counter()
    for row in rows:
        rec, reason = rule(row, float(p["min_margin"]))
        if rec is None:
            dropped[reason] += 1
        else:
            pairs.append(rec)
    return pairs, dropped
