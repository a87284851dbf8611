"""`make data` against the authors' data pipeline (issue 22): the math pairing rules by name and
the authors' rule of get_uni_dpo_data.py branch by branch, the PRM called as its model card
says (and as the authors call it, behind score.prm_call), normalize.over, prompts.dedupe, and
the stage hashes of every earlier config unchanged by the keys added."""

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch
import transformers
import yaml

from alignment_unidpo.base.errors import DataGenError
from alignment_unidpo.base.schema import default_of
from alignment_unidpo.datagen import generate as dg_generate
from alignment_unidpo.datagen import pipeline
from alignment_unidpo.datagen import scorers as dg_scorers
from alignment_unidpo.datagen.config import PairConfig, load_config, stage_keys
from alignment_unidpo.datagen.normalize import normal_cdf, normalize_pairs, normalize_rows
from alignment_unidpo.datagen.pair import (authors_margins, authors_order, authors_rule, best_correct_worst_incorrect,
                                           make_pairs)
from alignment_unidpo.generation.prompts import MATH_SYSTEM_PROMPT, math_conversation
from alignment_unidpo.training.toy import build_toy_tokenizer

REPO = Path(__file__).resolve().parents[1]
BEFORE_22 = REPO / "tests" / "fixtures" / "datagen-configs-before-issue-22"
AUTHORS = {**{f.name: default_of(f) for f in dataclasses.fields(PairConfig)}, "rule": "authors"}


def problem(i, answers, prompt_tokens=10):
    """A scored, verified problem: ``answers`` are (text, correct, score) or (text, correct, score, tokens)."""
    answers = [a if len(a) == 4 else (*a, 5) for a in answers]
    return {"id": i, "prompt": [{"role": "user", "content": f"problem {i}"}], "prompt_tokens": prompt_tokens,
            "samples": [{"text": t, "num_tokens": n} for t, _, _, n in answers],
            "correct": [c for _, c, _, _ in answers], "norm_scores": [s for _, _, s, _ in answers]}


def box(k):
    return f"so \\boxed{{{k}}}"


def texts(row, pairs):
    return [(row["samples"][c]["text"], row["samples"][r]["text"]) for _, c, r in pairs]


def rejected_over_seeds(row, seeds=range(40), **p):
    """The first rejected answer of ``row`` under each seed."""
    return {texts(row, authors_rule(row, {**AUTHORS, **p, "seed": s})[0])[0][1] for s in seeds}


# --- the rules by name ------------------------------------------------------------------------
def test_the_old_math_rule_is_an_alias_hashed_under_its_first_name(tmp_path):
    old = load_config(BEFORE_22 / "math-numinamath.yaml")
    assert old["pair"]["rule"] == "best_correct_worst_incorrect"
    renamed = load_config(BEFORE_22 / "math-numinamath.yaml", {"pair.rule": "best_correct_worst_incorrect"})
    assert stage_keys(renamed) == stage_keys(old) == {"generate": "b31b875cbc", "score": "be06729d6e",
                                                      "normalize": "10bd1d30ed", "pair": "96b3c6722e"}
    assert stage_keys(load_config(BEFORE_22 / "math-numinamath.yaml", {"pair.rule": "authors"}))["pair"] != "96b3c6722e"
    rows = [problem(0, [("a", True, 9.0), ("b", False, 2.0)])]
    assert make_pairs(rows, {"rule": "math", "min_margin": 0.0}) == make_pairs(
        rows, {"rule": "best_correct_worst_incorrect", "min_margin": 0.0})


ADDED_AT_DEFAULT = {"prompts.dedupe": False, "score.prm_call": "model_card", "normalize.over": "answers",
                    "pair.chosen_above": 6.0, "pair.max_pairs": 10000, "pair.max_tokens": 4000, "pair.seed": 0,
                    "pair.self_pairs": False}


@pytest.mark.parametrize("name", ["math-numinamath.yaml", "textual-external-judge.yaml", "textual-v0.2-armorm.yaml"])
def test_the_keys_added_move_no_hash_at_their_defaults_and_only_their_stages_otherwise(name):
    path = BEFORE_22 / name
    keys = stage_keys(load_config(path))
    assert stage_keys(load_config(path, ADDED_AT_DEFAULT)) == keys
    moved = stage_keys(load_config(path, {"prompts.dedupe": True}))
    assert all(moved[s] != keys[s] for s in keys)
    if name == "textual-v0.2-armorm.yaml":
        moved = stage_keys(load_config(path, {"normalize.over": "pairs"}))
        assert [moved[s] == keys[s] for s in keys] == [True, True, False, False]


def test_keys_that_would_change_nothing_are_refused(tmp_path):
    math = BEFORE_22 / "math-numinamath.yaml"
    armorm = BEFORE_22 / "textual-v0.2-armorm.yaml"
    for path, overrides, message in (
            (math, {"pair.max_pairs": 5}, "pair.max_pairs: read by pair.rule: authors only (this config: "
                                          "best_correct_worst_incorrect)"),
            (armorm, {"pair.chosen_above": 5, "pair.self_pairs": True}, "pair.chosen_above, pair.self_pairs: read by"),
            (armorm, {"score.prm_call": "authors"}, "score.prm_call: read by score.scorer: prm only"),
            (armorm, {"pair.rule": "authors"}, "pair.rule: authors needs score.verifier: math"),
            (math, {"normalize.over": "pairs"}, "normalize.over: pairs only changes normalize.method: zscore_cdf")):
        with pytest.raises(DataGenError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(path, overrides)
    assert load_config(math, {"pair.rule": "authors", "pair.max_pairs": None})["pair"]["max_pairs"] is None


# --- the authors' rule, branch by branch ---------------------------------------------------------
def test_a_lower_or_equal_scored_correct_answer_is_the_rejected_first():
    row = problem(0, [(box(4), True, 9.0), (box(4) + ".", True, 7.0), (box(4) + "!", True, 9.0), (box(5), False, 2.0)])
    # chosen: the first best correct (9.0); rejected: a random correct one scoring <= 9.0, equal included
    assert rejected_over_seeds(row) == {box(4) + ".", box(4) + "!"}
    pairs, reason, dropped = authors_rule(row, AUTHORS)
    assert reason is None and not dropped["answers_without_answer"] and texts(row, pairs)[0][0] == box(4)
    # the next pass pairs what is left: the remaining correct one against the incorrect one
    assert len(pairs) == 2 and texts(row, pairs)[1][1] == box(5) and [step for step, _, _ in pairs] == [(0, 0), (0, 1)]


def test_only_lower_incorrect_answers_give_a_random_incorrect_rejected():
    row = problem(0, [(box(4), True, 8.0), (box(1), False, 3.0), (box(2), False, 8.0), (box(3), False, 9.5)])
    assert rejected_over_seeds(row) == {box(1), box(2)}  # 8.0 <= 8.0 counts as lower; 9.5 never
    pairs, reason, _ = authors_rule(row, AUTHORS)
    assert len(pairs) == 1 and reason is None  # no correct answer left for a second pass


def test_nothing_lower_below_the_threshold_and_no_correct_answer_drop_the_problem():
    assert authors_rule(problem(0, [(box(4), True, 7.0), (box(5), False, 9.0)]), AUTHORS)[:2] == ([], "nothing_lower")
    assert authors_rule(problem(0, [(box(4), True, 9.0)]), AUTHORS)[:2] == ([], "nothing_lower")
    below = problem(0, [(box(4), True, 6.0), (box(4) + ".", True, 5.0), (box(5), False, 1.0)])
    assert authors_rule(below, AUTHORS)[:2] == ([], "below_threshold")  # > 6: 6.0 itself is not above
    assert len(authors_rule(below, {**AUTHORS, "chosen_above": 5.5})[0]) == 1
    assert authors_rule(problem(0, [(box(5), False, 9.0), (box(6), False, 1.0)]), AUTHORS)[:2] == ([], "no_correct")


def test_answers_without_an_extractable_answer_are_dropped_before_pairing():
    row = problem(0, [(box(4), True, 9.0), ("I give up.", False, 1.0), ("", False, 0.5)])
    pairs, reason, dropped = authors_rule(row, AUTHORS)
    assert (pairs, reason, dropped["answers_without_answer"]) == ([], "nothing_lower", 2)
    row = problem(0, [(box(4), True, 9.0), ("I give up.", False, 1.0), ("the answer is 7", False, 0.5)])
    assert texts(row, authors_rule(row, AUTHORS)[0]) == [(box(4), "the answer is 7")]


def test_answers_over_max_tokens_prompt_included_are_dropped():
    # prompt 100 tokens: 100 + 3900 = 4000 is kept, 100 + 3901 is over 4000
    row = problem(0, [(box(4), True, 9.0, 3900), (box(5), False, 2.0, 3901)], prompt_tokens=100)
    pairs, reason, dropped = authors_rule(row, AUTHORS)
    assert (pairs, reason, dropped["answers_overlong"]) == ([], "nothing_lower", 1)
    assert len(authors_rule(row, {**AUTHORS, "max_tokens": None})[0]) == 1  # their -1: keep every answer
    assert len(authors_rule(row, {**AUTHORS, "max_tokens": 4001})[0]) == 1
    assert authors_rule(row, {**AUTHORS, "max_tokens": 3000})[1] == "all_overlong"
    with pytest.raises(DataGenError, match="pair.max_tokens counts prompt \\+ answer tokens"):
        authors_rule({k: v for k, v in row.items() if k != "prompt_tokens"}, AUTHORS)


def test_the_cap_takes_the_pairs_pass_by_pass_over_problems_in_a_seeded_order():
    rows = [problem(i, [(box(1) + "." * k, True, 9.0 - k) for k in range(4)]) for i in range(3)]  # 2 pairs each
    order = sorted(range(3), key=lambda i: authors_order(0, i))
    pairs, dropped = make_pairs(rows, AUTHORS)
    assert [p["id"] for p in pairs] == order + order and not dropped
    pairs, dropped = make_pairs(rows, {**AUTHORS, "max_pairs": 4})
    assert [p["id"] for p in pairs] == order + order[:1] and dropped == {"pairs_over_cap": 2}
    pairs, dropped = make_pairs(rows, {**AUTHORS, "max_pairs": 2})
    assert [p["id"] for p in pairs] == order[:2] and dropped == {"pairs_over_cap": 4, "cap": 1}
    assert all(p["correct_chosen"] and p["correct_rejected"] for p in pairs)
    other = [p["id"] for p in make_pairs(rows, {**AUTHORS, "seed": 1, "max_pairs": 3})[0]]
    assert sorted(other) == [0, 1, 2]


def test_the_pairs_depend_neither_on_the_shards_nor_on_the_other_problems():
    rng = random.Random(0)
    rows = [problem(i, [(box(k) + "." * i, rng.random() < 0.6, round(rng.uniform(0, 10), 1)) for k in range(8)])
            for i in range(12)]
    whole = make_pairs(rows, {**AUTHORS, "max_pairs": 15})
    for shards in ([rows[6:], rows[:6]], [rows[i::3] for i in range(3)], [rows[::-1]]):  # other splits and orders
        assert make_pairs([r for shard in shards for r in shard], {**AUTHORS, "max_pairs": 15}) == whole
    uncapped = make_pairs(rows, AUTHORS)[0]
    for row in rows:  # a problem's random choices are its own
        assert make_pairs([row], AUTHORS)[0] == [p for p in uncapped if p["id"] == row["id"]]


def test_self_pairs_as_the_script_is_written():
    row = problem(0, [(box(4), True, 9.0), (box(5), False, 3.0), (box(6), False, 4.0)])
    # as written, the chosen answer is its only lower-or-equal correct candidate: paired with itself,
    # then `del` twice at its position removes it and the answer after it
    pairs, reason, _ = authors_rule(row, {**AUTHORS, "self_pairs": True})
    assert texts(row, pairs) == [(box(4), box(4))] and reason is None
    assert rejected_over_seeds(row) == {box(5), box(6)}  # by default the incorrect fallback is reached


def test_a_margin_above_zero_is_lowered_by_half_a_point_as_their_loop_does():
    assert authors_margins(0.0) == [0.0]
    assert authors_margins(1.2) == pytest.approx([1.2, 0.7, 0.2])
    assert authors_margins(5.0) == pytest.approx([5.0 - 0.5 * k for k in range(10)])
    rows = [problem(0, [(box(4), True, 9.0), (box(5), False, 8.5)]),
            problem(1, [(box(4), True, 9.0), (box(5), False, 2.0)])]
    pairs, reason, _ = authors_rule(rows[0], {**AUTHORS, "min_margin": 1.0})
    assert [step for step, _, _ in pairs] == [(1, 0)]  # 8.5 <= 9 - 0.5, in the second round
    assert [p["id"] for p in make_pairs(rows, {**AUTHORS, "min_margin": 1.0})[0]] == [1, 0]  # round 1 after round 0


# --- the pipeline: every drop reason in stats.json ------------------------------------------------
ANSWERS = {  # prompt i -> (text, score); correct when the text's box holds 2i
    0: [(box(0), 9.0), (box(7), 2.0)],
    1: [(box(5), 9.0), (box(7), 2.0)],  # no correct answer
    2: [(box(4), 5.0), (box(7), 1.0)],  # the correct one at 5: below the threshold
    3: [(box(6), 9.0), ("no idea here", 1.0)],  # the incorrect one has no answer: nothing lower
    4: [(box(8), 9.0), (box(7), 1.0)],  # the incorrect one is overlong: nothing lower
    5: [(box(10), 8.0), (box(7), 2.0)],  # a pair, cut by max_pairs: 1
}


def test_stats_count_every_drop_reason_of_the_authors_rule(tmp_path):
    build_toy_tokenizer().save_pretrained(tmp_path / "policy")
    with open(tmp_path / "prompts.jsonl", "w") as f:
        for i in ANSWERS:
            f.write(json.dumps({"prompt": f"what is {i} plus {i}?", "answer": str(2 * i)}) + "\n")
    with open(tmp_path / "judge.jsonl", "w") as f:
        for i, answers in ANSWERS.items():
            for text, score in answers:
                f.write(json.dumps({"prompt": f"what is {i} plus {i}?", "answer": text, "score": score}) + "\n")
    cfg = {"name": "authors", "output_root": str(tmp_path / "out"),
           "prompts": {"source": "jsonl", "path": str(tmp_path / "prompts.jsonl"), "answer_field": "answer"},
           "generate": {"model": str(tmp_path / "policy"), "num_samples": 2, "shard_size": 4},
           "score": {"scorer": "external", "path": str(tmp_path / "judge.jsonl"), "verifier": "math"},
           "normalize": {"method": "none"},
           "pair": {"rule": "authors", "max_pairs": 1, "max_tokens": 10_000}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))

    def sampler(conversations, seeds):
        out = []
        for conv in conversations:
            i = int(conv[-1]["content"].split()[2])
            out.append([{"text": t, "num_tokens": 10 ** 6 if (i, t) == (4, box(7)) else 5, "finished": True}
                        for t, _ in ANSWERS[i]])
        return out

    summary = pipeline.run(load_config(tmp_path / "cfg.yaml"), progress=False, sampler=sampler)
    stats = json.loads(Path(summary["stats"]).read_text())
    assert stats["dropped"] == {"no_correct": 1, "below_threshold": 1, "nothing_lower": 2, "answers_without_answer": 1,
                                "answers_overlong": 1, "cap": 1, "pairs_over_cap": 1}
    (pair,) = [json.loads(line) for line in Path(summary["dataset"]).read_text().splitlines()]
    assert pair["id"] == min((0, 5), key=lambda i: authors_order(0, i)) and pair["correct_rejected"] is False
    assert stats["pairs"] == 1 and summary["tau_good"] == pair["score_chosen"]


# --- normalize.over ----------------------------------------------------------------------------
def test_normalize_over_answers_or_over_the_pairs_scores():
    rows = [{"id": 0, "prompt": [], "samples": [{"text": t} for t in "abc"], "scores": [0.0, 9.0, 10.0]},
            {"id": 1, "prompt": [], "samples": [{"text": t} for t in "abc"], "scores": [2.0, 5.0, 6.0]}]
    pair = {"rule": "best_worst", "min_margin": 0.0}

    def cdf(v, values):
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((x - mean) ** 2 for x in values) / len(values))
        return 10 * normal_cdf((v - mean) / sd)

    every = [0.0, 9.0, 10.0, 2.0, 5.0, 6.0]
    normed, params = normalize_rows(rows, {"method": "zscore_cdf", "over": "answers"})
    pairs, _ = make_pairs(normed, pair)
    assert [(p["score_chosen"], p["score_rejected"]) for p in pairs] == [
        pytest.approx((cdf(10, every), cdf(0, every))), pytest.approx((cdf(6, every), cdf(2, every)))]
    assert params == pytest.approx({"mean": 32 / 6, "sd": math.sqrt(sum((x - 32 / 6) ** 2 for x in every) / 6)})

    raw, params = normalize_rows(rows, {"method": "zscore_cdf", "over": "pairs"})
    assert params == {"over": "pairs"} and [r["norm_scores"] for r in raw] == [r["scores"] for r in rows]
    pairs, params = normalize_pairs(make_pairs(raw, pair)[0], {"method": "zscore_cdf", "over": "pairs"})
    chosen_rejected = [10.0, 0.0, 6.0, 2.0]  # the pairs' scores only: mean 4.5
    assert params == pytest.approx({"over": "pairs", "mean": 4.5, "sd": math.sqrt(14.75)})
    assert [(p["score_chosen"], p["score_rejected"]) for p in pairs] == [
        pytest.approx((cdf(10, chosen_rejected), cdf(0, chosen_rejected))),
        pytest.approx((cdf(6, chosen_rejected), cdf(2, chosen_rejected)))]


# --- the PRM ------------------------------------------------------------------------------------
SPECIAL = ("<extra_0>", "<|im_end|>", "<|endoftext|>", "<|im_start|>")  # ids 1, 2, 3, 4


class ChatMLTokenizer:
    """Characters as token ids, the four special tokens one id each, Qwen's ChatML template;
    keeps the conversations it renders."""

    def __init__(self):
        self.rendered = []

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        self.rendered.append(messages)
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def encode(self, text, return_tensors=None, add_special_tokens=True):
        ids, i = [], 0
        while i < len(text):
            special = next((k for k, s in enumerate(SPECIAL) if text.startswith(s, i)), None)
            ids.append(10 + ord(text[i]) if special is None else special + 1)
            i += 1 if special is None else len(SPECIAL[special])
        return torch.tensor([ids]) if return_tensors == "pt" else ids


class StepPRM(torch.nn.Module):
    """P(positive) = ``rewards[k]`` at the k-th ``<extra_0>``; keeps the ids it reads."""

    def __init__(self, rewards):
        super().__init__()
        self.rewards, self.device, self.seen = rewards, torch.device("cpu"), []

    def forward(self, input_ids):
        self.seen.append(input_ids[0].tolist())
        logits = torch.zeros(*input_ids.shape, 2)
        for k, at in enumerate((input_ids[0] == 1).nonzero().flatten().tolist()):
            p = self.rewards[min(k, len(self.rewards) - 1)]
            logits[0, at, 1] = math.log(p / (1 - p))
        return (logits,)


def prm_score(tmp_path, monkeypatch, rows, rewards, prm_call="model_card"):
    (tmp_path / "prm").mkdir(exist_ok=True)
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "p"}) + "\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "name": "prm", "output_root": str(tmp_path / "out"),
        "prompts": {"source": "jsonl", "path": str(tmp_path / "prompts.jsonl")},
        "generate": {"model": str(tmp_path / "prm")},
        "score": {"scorer": "prm", "model": str(tmp_path / "prm"), "trust_remote_code": True, "prm_call": prm_call},
        "pair": {"rule": "best_worst"}}))
    tokenizer, model = ChatMLTokenizer(), StepPRM(rewards)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: model)
    scores = dg_scorers.prm_scorer(load_config(tmp_path / "cfg.yaml"))(rows, "shard-00000.jsonl")
    return [s for row in scores for s in row["scores"]], tokenizer.rendered, model.seen


ANSWER = "Step one\n\n\n\nStep two \n\nSo \\boxed{2}"


def test_the_prm_reads_the_raw_problem_and_the_answers_steps_as_its_model_card_says(tmp_path, monkeypatch):
    rows = [{"id": 0, "prompt": math_conversation("What is 1+1?"), "samples": [{"text": ANSWER}]},
            {"id": 1, "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
             "samples": [{"text": "4"}]}]
    scores, rendered, seen = prm_score(tmp_path, monkeypatch, rows, [0.9, 0.8, 0.7, 0.6, 0.2])
    assert rendered[0] == [
        {"role": "system", "content": MATH_SYSTEM_PROMPT},
        {"role": "user", "content": "What is 1+1?"},  # not the CoT sentence our math template appends
        {"role": "assistant", "content": "Step one<extra_0>Step two<extra_0>So \\boxed{2}<extra_0>"}]
    assert rendered[1][:2] == [{"role": "system", "content": MATH_SYSTEM_PROMPT}, {"role": "user", "content": "2+2?"}]
    # ends <extra_0><|im_end|>\n: no generation prompt
    assert seen[0][-3:] == [1, 2, 10 + ord("\n")] and seen[0].count(1) == 3
    assert scores == pytest.approx([10 * 0.7, 10 * 0.9])  # min over the three steps, times 10


def test_the_authors_prm_call_keeps_blank_steps_adds_a_spurious_one_and_rounds(tmp_path, monkeypatch):
    rows = [{"id": 0, "prompt": math_conversation("What is 1+1?"), "samples": [{"text": ANSWER}]}]
    scores, rendered, seen = prm_score(tmp_path, monkeypatch, rows, [0.9, 0.8, 0.7, 0.6, 0.2345], "authors")
    assert rendered[0][1] == {"role": "user", "content": "What is 1+1?"}
    assert rendered[0][2]["content"] == "Step one<extra_0><extra_0>Step two <extra_0>So \\boxed{2}<extra_0>"
    # the generation prompt <|im_start|>assistant\n, its last two ids overwritten, <|endoftext|> appended:
    # ...<extra_0><|im_end|>\n<|im_start|>a...an<extra_0><|im_end|><|endoftext|>, a fifth, spurious step
    ids = seen[0]
    assert ids[-3:] == [1, 2, 3] and ids.count(1) == 5
    tail = ids[ids.index(4, len(ids) - 20):]
    assert tail[0] == 4 and tail[-3:] == [1, 2, 3]
    assert scores == [pytest.approx(10 * 0.234)]  # the min, rounded to 3 decimals, times 10
    model_card, _, _ = prm_score(tmp_path, monkeypatch, rows, [0.9, 0.8, 0.7, 0.6, 0.2345])
    assert model_card == [pytest.approx(10 * 0.7)]  # the switch changes the score


def test_the_authors_prm_call_cuts_at_4090_tokens(tmp_path, monkeypatch):
    rows = [{"id": 0, "prompt": math_conversation("x?"), "samples": [{"text": "a" * 5000}]}]
    _, _, seen = prm_score(tmp_path, monkeypatch, rows, [0.9], "authors")
    assert len(seen[0]) == 4091 and seen[0][-3:] == [1, 2, 3] and seen[0].count(1) == 1  # the step cut, scored
    _, _, seen = prm_score(tmp_path, monkeypatch, rows, [0.9])
    assert len(seen[0]) > 5000


# --- prompts.dedupe ------------------------------------------------------------------------------
def test_dedupe_keeps_the_first_of_equal_prompts_before_the_limit(tmp_path):
    (tmp_path / "policy").mkdir()
    with open(tmp_path / "prompts.jsonl", "w") as f:
        for prompt in ("a", "b", "a", [{"role": "user", "content": "c"}], "b", [{"content": "c", "role": "user"}]):
            f.write(json.dumps({"prompt": prompt}) + "\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "name": "d", "output_root": str(tmp_path / "out"),
        "prompts": {"source": "jsonl", "path": str(tmp_path / "prompts.jsonl")},
        "generate": {"model": str(tmp_path / "policy")}, "score": {"scorer": "external", "path": "j.jsonl"}}))
    cfg = load_config(tmp_path / "cfg.yaml")
    assert len(dg_generate.load_prompts(cfg)) == 6
    kept = dg_generate.load_prompts(load_config(tmp_path / "cfg.yaml", {"prompts.dedupe": True}))
    assert [(p["id"], p["prompt"][-1]["content"]) for p in kept] == [(0, "a"), (1, "b"), (2, "c")]
    kept = dg_generate.load_prompts(load_config(tmp_path / "cfg.yaml", {"prompts.dedupe": True, "prompts.limit": 2}))
    assert [p["prompt"][-1]["content"] for p in kept] == ["a", "b"]


def test_the_old_names_of_the_paper_configs_say_where_they_went(capsys):
    from alignment_unidpo import data_cli

    assert data_cli.main(["data_configs/paper/math-numinamath.yaml", "--dry_run"]) == 2
    err = capsys.readouterr().err
    assert "renamed to data_configs/paper/math-qwen2.5-math-7b.yaml" in err
    assert best_correct_worst_incorrect(problem(0, [("a", True, 9.0), ("b", False, 2.0)]))[1] is None
