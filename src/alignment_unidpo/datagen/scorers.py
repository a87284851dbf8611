"""The scorers of ``make data``'s score stage: one :class:`ScorerSpec` per ``score.scorer``.

Datagen's own (appendix C.2 of the paper):

* ``reward_model``: an ``AutoModelForSequenceClassification`` (ArmoRM for v0.2, any
  single-logit reward model), bf16 by default, batched, the conversation plus the answer
  through the reward model's own chat template; ``trust_remote_code`` only when the config
  says so (ArmoRM needs it). ArmoRM is a regression model: normalise with ``zscore_cdf``
  (footnote 4).
* ``external``: scores from an outside judge (GPT-4o "single-v1" 1-10 ratings, Qwen2.5-72B)
  in a jsonl of ``{prompt, answer, score}``, joined by prompt text and answer text; a
  sample without a score is an error naming the generation shard and line.
* ``prm``: Qwen2.5-Math-PRM-7B as its model card documents it (``AutoModel``; system: the
  card's "Please reason step by step..."; user: the raw problem, without the CoT sentence
  our math template appends; assistant: the steps joined by ``<extra_0>``; the
  positive-class probability at each separator). Its modelling code ships with the model:
  the config must say ``trust_remote_code: true`` (never forced); without it transformers
  loads the bare Qwen2 body, which this scorer refuses (:func:`check_prm_logits`). The
  paper splits responses into steps by the "solution reformatting" of Zheng et al.
  (footnote 6); the authors' code splits on ``"\n\n"`` (``prm_step_separator``), blank
  steps dropped here; the step rewards are reduced by ``prm_aggregate`` (min, as the
  authors' generate_data.sh), then scaled 0-1 by 10 (the authors' get_uni_dpo_data.py).
  ``prm_call: authors`` calls it as their progress_reward_labeling.py does
  (:func:`authors_prm_ids`). **Not run yet** (a 7B model).
* ``none``: no score (``pair.rule: best_correct_worst_incorrect`` with the verifier only).
* ``openai_judge``: a chat model behind any OpenAI-compatible endpoint (GPT-4o, or an open judge
  on ``vllm serve``) rates each answer 1-10 with FastChat's ``single-v1`` prompt, the question
  being the last user turn (:mod:`.judge`, :mod:`.judge_prompt`). An empty answer is not sent
  (score None; pairing leaves empty answers out anyway). An answer whose judgment has no
  ``[[rating]]`` is dropped from its row's samples (its index listed in ``unrated_samples``),
  so it is never chosen or rejected; ``stats.json`` counts them.

Every scorer has one signature: built from the whole config (:data:`ScorerBuilder`, its
models loaded then), it scores a generation shard's rows (:data:`ShardScorer`), given the
shard's file for its error messages, and returns per row the fields the row gains:
``scores`` (one per sample) and whatever else it keeps.

A package above datagen adds its own with :func:`register_scorer`: the preference world
registers ``world_judge``, its noisy judge (:mod:`alignment_unidpo.world.plugins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..base.errors import DataGenError
from ..base.jsonio import read_json_records
from ..base.values import trusts_remote_code
from ..generation.prompts import MATH_SYSTEM_PROMPT, MATH_USER_TEMPLATE
from .judge import Judge, judge_problems


# (a generation shard's rows, its file) -> per row, the fields it gains: "scores" (one per
# sample) and whatever else the scorer keeps (the world's judge: "true_scores").
ShardScorer = Callable[[list[dict[str, Any]], Path], list[dict[str, Any]]]
# The whole config -> its scorer (models loaded).
ScorerBuilder = Callable[[dict[str, Any]], ShardScorer]


def score_fields(scores: list[list[float | None]]) -> list[dict[str, Any]]:
    """Each row's sample scores as the fields it gains (``scores`` alone)."""
    return [{"scores": row} for row in scores]


def prompt_text(messages: list[dict[str, str]]) -> str:
    """The last user turn: the key an external judge's file is joined on."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]


def reward_model_scorer(cfg: dict[str, Any]) -> ShardScorer:
    """``reward_model``: a sequence-classification reward model's score of each answer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    s = cfg["score"]
    trust = trusts_remote_code(s, "score")
    tokenizer = AutoTokenizer.from_pretrained(s["model"], trust_remote_code=trust)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(s["model"], dtype=s["dtype"], trust_remote_code=trust).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    tokenizer.padding_side = "right"

    @torch.no_grad()
    def score(rows, shard_file):
        texts = [tokenizer.apply_chat_template(r["prompt"] + [{"role": "assistant", "content": smp["text"]}],
                                               tokenize=False) for r in rows for smp in r["samples"]]
        flat: list[float] = []
        for i in range(0, len(texts), int(s["batch_size"])):
            enc = tokenizer(texts[i:i + int(s["batch_size"])], add_special_tokens=False, padding=True,
                            truncation=True, max_length=int(s["max_length"]), return_tensors="pt").to(device)
            out = model(**enc)
            logits = getattr(out, "score", None)  # ArmoRM's custom output names its preference score
            logits = out.logits if logits is None else logits
            flat += logits.float().reshape(len(enc["input_ids"]), -1)[:, 0].tolist()
        it = iter(flat)
        return score_fields([[next(it) for _ in r["samples"]] for r in rows])

    return score


def external_scorer(cfg: dict[str, Any]) -> ShardScorer:
    """``external``: an outside judge's scores, joined on prompt and answer text (a missing
    one names the shard file and line)."""
    path = Path(cfg["score"]["path"])
    if not path.is_file():
        raise DataGenError(f"{path}: external judge scores file not found (score.path)")
    table: dict[tuple[str, str], float] = {}
    rows = read_json_records(path)
    for number, row in zip(rows.numbers, rows):
        missing = [k for k in ("prompt", "answer", "score") if k not in row]
        if missing:
            raise DataGenError(f"{path}, line {number}: missing {', '.join(missing)} (need prompt, answer, score)")
        prompt = row["prompt"] if isinstance(row["prompt"], str) else prompt_text(row["prompt"])
        try:
            table[(prompt.strip(), str(row["answer"]).strip())] = float(row["score"])
        except (TypeError, ValueError):
            raise DataGenError(f"{path}, line {number}: score {row['score']!r} is not a number") from None

    def score(rows, shard_file):
        out = []
        for line, r in enumerate(rows, start=1):
            key_prompt = prompt_text(r["prompt"]).strip()
            scores = []
            for j, smp in enumerate(r["samples"]):
                key = (key_prompt, smp["text"].strip())
                if key not in table:
                    raise DataGenError(f"{shard_file}, line {line}: sample {j} of prompt {r['id']} has no score in "
                                       f"{path} (joined on prompt and answer text)")
                scores.append(table[key])
            out.append(scores)
        return score_fields(out)

    return score


def prm_step_rewards(logits: torch.Tensor, token_mask: torch.Tensor) -> list[list[float]]:
    """The model card's ``make_step_rewards``: P(positive) at each ``<extra_0>`` position."""
    probs = torch.softmax(logits.float(), dim=-1) * token_mask.unsqueeze(-1)
    out = []
    for sample in probs:
        positive = sample[sample != 0].view(-1, 2)[:, 1]
        out.append(positive.cpu().tolist())
    return out


def check_prm_logits(logits: torch.Tensor, s: dict[str, Any]) -> None:
    """A PRM gives two logits (negative, positive) per token; anything else (the bare Qwen2
    body's hidden states, when the PRM's own code was not trusted) would score silently wrong."""
    if logits.shape[-1] != 2:
        hint = "" if trusts_remote_code(s, "score") else (" (score.trust_remote_code is false: a PRM that ships its "
                                                          "own modelling code, as Qwen2.5-Math-PRM does, needs true)")
        raise DataGenError(f"score.model {s['model']!r} gives {logits.shape[-1]} outputs per token, not a process "
                           f"reward model's 2 step logits{hint}")


def aggregate(steps: list[float], how: str) -> float:
    if not steps:
        return 0.0
    if how == "min":
        return min(steps)
    if how == "last":
        return steps[-1]
    if how == "mean":
        return sum(steps) / len(steps)
    prod = 1.0
    for x in steps:
        prod *= x
    return prod


PRM_SEPARATOR, PRM_END, PRM_EOS = "<extra_0>", "<|im_end|>", "<|endoftext|>"
AUTHORS_PRM_MAX_TOKENS = 4090  # progress_reward_labeling.py:114-124 (vLLM max_model_len 4096)
MATH_COT_SENTENCE = MATH_USER_TEMPLATE.format(question="")  # " Let's think step by step and output ..."


def prm_problem(messages: list[dict[str, str]]) -> str:
    """The raw problem of a math conversation: its user turn without the CoT sentence our
    math template appends (the PRM's model card and the authors put the bare problem there)."""
    query = prompt_text(messages)
    return query[:-len(MATH_COT_SENTENCE)] if query.endswith(MATH_COT_SENTENCE) else query


def prm_steps(text: str, separator: str, authors: bool) -> list[str]:
    """An answer's steps: split on ``separator``; blank steps dropped and each stripped, unless
    ``authors`` (their ``response.split("\n\n")``, progress_reward_labeling.py:113)."""
    if authors:
        return text.split(separator)
    return [x.strip() for x in text.split(separator) if x.strip()] or [""]


def authors_prm_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The token ids the authors' progress_reward_labeling.py (lines 114-129) gives the PRM: the
    chat template *with* the generation prompt, cut to 4,090 tokens; unless the ids end with
    ``<extra_0><|im_end|><|endoftext|>`` (they never do: the generation prompt
    ``<|im_start|>assistant\n`` ends them), the last two are overwritten by ``<extra_0><|im_end|>``
    and ``<|endoftext|>`` appended. So every answer gets one more, spurious step (the PRM's
    reward at an ``<extra_0>`` after ``<|im_start|>``), which the min over steps includes,
    and an answer cut at 4,090 tokens is scored up to the cut."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = list(tokenizer.encode(text, add_special_tokens=False))[:AUTHORS_PRM_MAX_TOKENS]
    sep, end, eos = (tokenizer.encode(t)[0] for t in (PRM_SEPARATOR, PRM_END, PRM_EOS))
    if ids[-3:] != [sep, end, eos]:
        ids[-2:] = [sep, end]
        ids.append(eos)
    return ids


def prm_scorer(cfg: dict[str, Any]) -> ShardScorer:
    """``prm``: the PRM's score of each sample (tested on a stand-in model; the 7B PRM not run yet)."""
    from transformers import AutoModel, AutoTokenizer

    s = cfg["score"]
    trust = trusts_remote_code(s, "score")
    tokenizer = AutoTokenizer.from_pretrained(s["model"], trust_remote_code=trust)
    model = AutoModel.from_pretrained(s["model"], dtype=s["dtype"], device_map="auto", trust_remote_code=trust).eval()
    sep_id = tokenizer.encode(PRM_SEPARATOR)[0]

    authors = s.get("prm_call", "model_card") == "authors"

    @torch.no_grad()
    def score(rows, shard_file):
        out = []
        for r in rows:
            query = prm_problem(r["prompt"])
            scores = []
            for smp in r["samples"]:
                steps = prm_steps(smp["text"], s["prm_step_separator"], authors)
                messages = [{"role": "system", "content": MATH_SYSTEM_PROMPT}, {"role": "user", "content": query},
                            {"role": "assistant", "content": PRM_SEPARATOR.join(steps) + PRM_SEPARATOR}]
                if authors:
                    ids = torch.tensor([authors_prm_ids(tokenizer, messages)], device=model.device)
                else:  # the model card's call
                    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
                    ids = tokenizer.encode(text, return_tensors="pt").to(model.device)
                logits = model(input_ids=ids)[0]
                check_prm_logits(logits, s)
                reward = aggregate(prm_step_rewards(logits, ids == sep_id)[0], s["prm_aggregate"])
                if authors:  # their min_rewards / avg_rewards: round(..., 3) (progress_reward_labeling.py:148-149)
                    reward = round(reward, 3)
                scores.append(float(s["prm_scale"]) * reward)
            out.append(scores)
        return score_fields(out)

    return score


def openai_judge_scorer(cfg: dict[str, Any]) -> ShardScorer:
    """``openai_judge``: each sample's 1-10 rating by the judge at ``score.judge_api_base``.

    A row gains ``scores`` (the rated samples'), ``unrated_samples`` (the indices of those whose
    judgment had no rating) and, when any was unrated, ``samples`` without them. The scorer's
    ``stats()`` is the judge's count of answers, cache hits, requests, retries and unparsable
    ratings (written beside the score shards)."""
    judge = Judge.from_config(cfg)

    def score(rows, shard_file):
        ratings = iter(judge.rate([(prompt_text(r["prompt"]), smp["text"]) for r in rows for smp in r["samples"]],
                                  desc=f"judge {Path(shard_file).stem}"))
        out = []
        for r in rows:
            got = [next(ratings) for _ in r["samples"]]
            unrated = [j for j, (g, smp) in enumerate(zip(got, r["samples"])) if g is None and smp["text"].strip()]
            fields: dict[str, Any] = {"scores": [g for j, g in enumerate(got) if j not in unrated],
                                      "unrated_samples": unrated}
            if unrated:
                fields["samples"] = [smp for j, smp in enumerate(r["samples"]) if j not in unrated]
            out.append(fields)
        return out

    score.stats = judge.stats
    return score


def no_scorer(cfg: dict[str, Any]) -> ShardScorer:
    """``none``: no score for any sample (best_correct_worst_incorrect pairs by the verifier's labels alone)."""
    return lambda rows, shard_file: score_fields([[None] * len(r["samples"]) for r in rows])


@dataclass(frozen=True)
class ScorerSpec:
    """One ``score.scorer``: how it is built from the config, and what the config must hold for it."""

    build: ScorerBuilder  # the whole config -> the scorer (its models loaded)
    uses_model: bool = False  # reads score.model (which must then be given, and exist)
    needs_source: str | None = None  # the only prompts.source whose prompts it can score
    # what a run would stop on, checked before anything loads while the score stage is to run
    # (the judge's API key): the config -> one line per problem, each naming its key
    problems: Callable[[dict[str, Any]], list[str]] | None = None


SCORERS: dict[str, ScorerSpec] = {}


def register_scorer(name: str, spec: ScorerSpec) -> None:
    """Make ``score.scorer: <name>`` score with ``spec``."""
    SCORERS[name] = spec


# Late-bound through the module's names, so that a test can stand in for a loader.
register_scorer("reward_model", ScorerSpec(lambda cfg: reward_model_scorer(cfg), uses_model=True))
register_scorer("external", ScorerSpec(lambda cfg: external_scorer(cfg)))
register_scorer("prm", ScorerSpec(lambda cfg: prm_scorer(cfg), uses_model=True))
register_scorer("none", ScorerSpec(lambda cfg: no_scorer(cfg)))
register_scorer("openai_judge", ScorerSpec(lambda cfg: openai_judge_scorer(cfg), problems=judge_problems))
