"""A preference world with known truth: a small task, its true quality function, and
seeded data (SFT demonstrations, noisy-judge preference pairs, clean held-out pairs).

The task. A prompt ``count 5 from 3 by 4`` asks for ``n`` digits counting from ``s`` in
steps of ``k`` modulo 10; the answer is ``37159``. A transformer of a few hundred
thousand parameters learns it in seconds (each digit depends on the previous one and
``k``). :func:`true_score` grades any answer on a continuous 0-10 scale: one point for
the right first digit and one for every correct step (a digit that is the previous
one plus ``k`` modulo 10), over the longer of answer and target, so a wrong step, a
missing or an extra digit each cost ``10 / n`` points and a mistake does not cascade;
only the exact answer gets 10.

The demonstrators. Answers are written by simulated annotators of mixed skill. Each
has a *lazy-wrap habit*: where the count wraps past 9 it repeats the previous digit
instead of writing ``(d + k) % 10``, with a per-annotator probability drawn around
0.6, so the most frequent answer at a wrapping step is wrong. Annotators also make
random typos and sometimes drop the last digit. A model fitted to these demonstrations
by maximum likelihood (the SFT start) inherits the habit in its greedy answers, which
leaves preference learning something real to fix.

The judge. Preference pairs are two answers to one prompt, labelled by a noisy judge:
its score of an answer is the true score plus Gaussian noise (sd ``judge_noise``),
clipped to 0-10, and the pair's chosen answer is the one it scores higher. The chance
that the label is wrong is then ``Phi(-|margin| / (sqrt(2) * judge_noise))``
(:func:`label_flip_probability`), which grows as the true margin shrinks: the paper's
premise that ambiguous pairs are unreliable (Sec. 3.1). The recorded
``score_chosen``/``score_rejected`` are the judge's scores, as in real data; the true
scores are kept beside them (``true_chosen``/``true_rejected``) for analysis only.

Held-out data: clean pairs (labelled and scored by the true function) and prompts
for greedy generation, in a validation split (for tuning) and a test split (for the
reported numbers), on tasks (start, step, length) never seen in SFT or training pairs.
Everything is a deterministic function of :class:`WorldConfig`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
import statistics
from pathlib import Path
from typing import Any

from ..base.files import write_jsonl_atomic, write_text_atomic

TASK_FORMAT = "count {n} from {start} by {step}"
TASK_PATTERN = re.compile(r"^count (\d) from (\d) by (\d)$")


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Everything the generated data depends on."""

    seed: int = 0
    min_digits: int = 4
    max_digits: int = 9
    habit_mean: float = 0.6  # mean probability of the lazy-wrap habit (> 0.5: the modal answer is wrong)
    habit_spread: float = 0.3  # annotators' habit probability ~ U(mean - spread, mean + spread)
    max_typo_rate: float = 0.1  # per-digit typo probability ~ U(0, max_typo_rate)
    drop_last_rate: float = 0.1  # probability of dropping the last digit
    judge_noise: float = 1.5  # sd of the judge's Gaussian noise on the 0-10 scale
    gold_pair_rate: float = 0.25  # share of pairs whose first answer is the exact one
    n_val_tasks: int = 60  # held-out (start, step, length) tasks; the rest are training tasks
    n_test_tasks: int = 100
    n_sft: int = 3000
    n_train_pairs: int = 1200
    n_val_pairs: int = 300
    n_test_pairs: int = 400

    def key(self) -> str:
        """A short hash of the config, naming the cached data folder."""
        return _short_hash(dataclasses.asdict(self))

    def sft_key(self) -> str:
        """A short hash of what the SFT demonstrations depend on, naming the SFT folder: worlds
        that differ only in :data:`PAIR_ONLY_FIELDS` (e.g. the judge's noise) share one SFT model."""
        return _short_hash({k: v for k, v in dataclasses.asdict(self).items() if k not in PAIR_ONLY_FIELDS})


# Fields the SFT demonstrations do not depend on: they are drawn first, from the same seed,
# and these only shape the preference pairs drawn after them.
PAIR_ONLY_FIELDS = ("judge_noise", "gold_pair_rate", "n_train_pairs", "n_val_pairs", "n_test_pairs")


def _short_hash(values: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


@dataclasses.dataclass(frozen=True)
class Task:
    n: int
    start: int
    step: int

    @property
    def prompt(self) -> str:
        return TASK_FORMAT.format(n=self.n, start=self.start, step=self.step)

    @property
    def target(self) -> str:
        return "".join(str((self.start + j * self.step) % 10) for j in range(self.n))


def parse_prompt(prompt: str) -> Task:
    """The task of a prompt written by :data:`TASK_FORMAT`."""
    match = TASK_PATTERN.match(prompt.strip())
    if not match:
        raise ValueError(f"not a world prompt: {prompt!r} (expected e.g. 'count 5 from 3 by 4')")
    return Task(*(int(g) for g in match.groups()))


def true_score(task: Task, answer: str) -> float:
    """Quality on 0-10: right first digit plus correct steps, over the longer of answer and target."""
    answer, target = answer.strip(), task.target
    if not answer:
        return 0.0
    right = int(answer[0] == target[0])
    for prev, cur in zip(answer[:-1], answer[1:len(target)]):
        right += prev.isdigit() and cur.isdigit() and (int(prev) + task.step) % 10 == int(cur)
    return 10.0 * right / max(len(answer), len(target))


def label_flip_probability(true_margin: float, judge_noise: float) -> float:
    """P(the judge prefers the worse answer) = Phi(-|m| / (sqrt(2) sd)), ignoring clipping."""
    if judge_noise <= 0:
        return 0.0 if true_margin else 0.5
    return 0.5 * math.erfc(abs(true_margin) / (2.0 * judge_noise))


# --- sampling ---------------------------------------------------------------------------
def all_tasks(cfg: WorldConfig) -> list[Task]:
    return [Task(n, s, k) for n in range(cfg.min_digits, cfg.max_digits + 1) for s in range(10) for k in range(1, 10)]


def sample_annotator(rng: random.Random, cfg: WorldConfig) -> tuple[float, float]:
    """(lazy-wrap habit probability, typo rate) of one simulated annotator."""
    habit = min(1.0, max(0.0, rng.uniform(cfg.habit_mean - cfg.habit_spread, cfg.habit_mean + cfg.habit_spread)))
    return habit, rng.uniform(0.0, cfg.max_typo_rate)


def write_answer(task: Task, rng: random.Random, cfg: WorldConfig, habit: float, typo: float) -> str:
    """One annotator's answer: lazy wraps, random typos, sometimes a dropped last digit."""
    out = [task.start]
    for _ in range(task.n - 1):
        prev = out[-1]
        value = (prev + task.step) % 10
        if prev + task.step >= 10 and rng.random() < habit:
            value = prev  # the lazy-wrap habit: repeats the digit
        out.append(value)
    out = [rng.randint(0, 9) if rng.random() < typo else d for d in out]
    if len(out) > 1 and rng.random() < cfg.drop_last_rate:
        out.pop()
    return "".join(map(str, out))


def sample_pair_answers(task: Task, rng: random.Random, cfg: WorldConfig) -> tuple[str, str]:
    """Two answers of different true score to one prompt (the first is exact with ``gold_pair_rate``)."""
    first = task.target if rng.random() < cfg.gold_pair_rate else write_answer(task, rng, cfg, *sample_annotator(rng, cfg))
    for _ in range(100):
        second = write_answer(task, rng, cfg, *sample_annotator(rng, cfg))
        if true_score(task, second) != true_score(task, first):
            return first, second
    return first, (first[:-1] if len(first) > 1 else first + first)  # a different, worse answer


def _messages(task: Task) -> list[dict[str, str]]:
    return [{"role": "user", "content": task.prompt}]


def judge_score(task: Task, answer: str, rng: random.Random, cfg: WorldConfig) -> float:
    """The noisy judge's score of one answer: true score plus N(0, judge_noise), clipped to 0-10."""
    return min(10.0, max(0.0, true_score(task, answer) + rng.gauss(0.0, cfg.judge_noise)))


def judge(task: Task, a: str, b: str, rng: random.Random, cfg: WorldConfig) -> dict[str, Any]:
    """A noisy-judge pair record: chosen = the higher judge score (Gaussian noise, clipped)."""
    true = (true_score(task, a), true_score(task, b))
    noisy = [judge_score(task, x, rng, cfg) for x in (a, b)]
    if noisy[0] == noisy[1]:
        noisy[0] += 1e-3 if rng.random() < 0.5 else -1e-3
    order = (0, 1) if noisy[0] > noisy[1] else (1, 0)
    answers = (a, b)
    return {
        "prompt": _messages(task),
        "chosen": answers[order[0]], "rejected": answers[order[1]],
        "score_chosen": round(noisy[order[0]], 3), "score_rejected": round(noisy[order[1]], 3),
        "true_chosen": true[order[0]], "true_rejected": true[order[1]],
    }


def clean_pair(task: Task, a: str, b: str) -> dict[str, Any]:
    """A held-out pair labelled and scored by the true quality function."""
    (sa, wa), (sb, wb) = sorted([(true_score(task, a), a), (true_score(task, b), b)], reverse=True)
    return {"prompt": _messages(task), "chosen": wa, "rejected": wb, "score_chosen": sa, "score_rejected": sb,
            "true_chosen": sa, "true_rejected": sb}


def generate(cfg: WorldConfig) -> dict[str, list[dict[str, Any]]]:
    """All splits, deterministically from ``cfg``; val and test tasks never occur in SFT or training pairs."""
    rng = random.Random(cfg.seed)
    tasks = all_tasks(cfg)
    rng.shuffle(tasks)
    held_out = cfg.n_val_tasks + cfg.n_test_tasks
    if held_out >= len(tasks):
        raise ValueError(f"n_val_tasks + n_test_tasks = {held_out} leaves no training tasks out of {len(tasks)}")
    val_tasks, test_tasks, train_tasks = tasks[:cfg.n_val_tasks], tasks[cfg.n_val_tasks:held_out], tasks[held_out:]

    splits: dict[str, list[dict[str, Any]]] = {"sft": [], "train_pairs": []}
    for _ in range(cfg.n_sft):
        task = rng.choice(train_tasks)
        answer = write_answer(task, rng, cfg, *sample_annotator(rng, cfg))
        splits["sft"].append({"messages": _messages(task) + [{"role": "assistant", "content": answer}],
                              "true_score": true_score(task, answer)})
    for _ in range(cfg.n_train_pairs):
        task = rng.choice(train_tasks)
        splits["train_pairs"].append(judge(task, *sample_pair_answers(task, rng, cfg), rng, cfg))
    for split, split_tasks, n in (("val", val_tasks, cfg.n_val_pairs), ("test", test_tasks, cfg.n_test_pairs)):
        splits[f"{split}_pairs"] = []
        for _ in range(n):
            task = rng.choice(split_tasks)
            splits[f"{split}_pairs"].append(clean_pair(task, *sample_pair_answers(task, rng, cfg)))
        splits[f"{split}_prompts"] = [{"prompt": t.prompt, "target": t.target} for t in split_tasks]
    return splits


def summarize(splits: dict[str, list[dict[str, Any]]], cfg: WorldConfig) -> dict[str, Any]:
    """Facts about the generated data (written to world.json)."""
    train = splits["train_pairs"]
    flipped = [r["true_chosen"] < r["true_rejected"] for r in train]
    return {
        "config": dataclasses.asdict(cfg),
        "key": cfg.key(),
        "sft_key": cfg.sft_key(),
        "sizes": {name: len(rows) for name, rows in splits.items()},
        "sft_mean_true_score": statistics.fmean(r["true_score"] for r in splits["sft"]),
        "sft_exact_rate": statistics.fmean(r["true_score"] == 10.0 for r in splits["sft"]),
        "train_flip_rate": statistics.fmean(flipped),
        # the paper sets tau_good to the median chosen score of the training data (Table C.1)
        "median_score_chosen": statistics.median(r["score_chosen"] for r in train),
    }


def write_world(cfg: WorldConfig, folder: str | Path) -> Path:
    """Write every split as jsonl plus world.json into ``folder``; reuse it when the key matches."""
    folder = Path(folder)
    meta_path = folder / "world.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == cfg.key():
        return folder
    splits = generate(cfg)
    for name, rows in splits.items():
        write_jsonl_atomic(folder / f"{name}.jsonl", rows)
    write_text_atomic(meta_path, json.dumps(summarize(splits, cfg), indent=2))
    return folder

