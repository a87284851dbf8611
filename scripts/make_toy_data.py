#!/usr/bin/env python
"""Write data/toy_preferences_{text,chat}.jsonl, the small preference set behind the default recipe.

Short string tasks (reverse, upper-case, sort letters, add) with a correct or slightly
wrong chosen answer and a more damaged rejected one, each graded 0-10 by how much of the answer is right, plus
mild judge noise. Half the rows use plain strings, half chat message lists (one file
each, mixed by the default recipe), so both data shapes go through the default run. Deterministic: ``python scripts/make_toy_data.py``
rewrites the same file.
"""

import json
import random
import statistics
from pathlib import Path

WORDS = ("apple river stone cloud ember maple tiger piano lemon orbit quartz violet "
         "delta harbor falcon meadow copper silver wander garden").split()


def task(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["reverse", "upper", "sort", "add"])
    if kind == "add":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return f"Add {a} and {b}.", str(a + b)
    word = rng.choice(WORDS)
    if kind == "reverse":
        return f"Reverse the word: {word}", word[::-1]
    if kind == "upper":
        return f"Write in capitals: {word}", word.upper()
    return f"Sort the letters of: {word}", "".join(sorted(word))


def damage(answer: str, rng: random.Random, most: int | None = None) -> str:
    chars = list(answer)
    for _ in range(rng.randint(1, most or max(1, len(chars) // 2))):
        chars[rng.randrange(len(chars))] = rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
    damaged = "".join(chars)
    return damaged if damaged != answer else answer[::-1] + "x"


def grade(answer: str, truth: str) -> float:
    same = sum(a == b for a, b in zip(answer, truth))
    return 10.0 * same / max(len(answer), len(truth))


def main(n: int = 400, seed: int = 0, folder: str = "data") -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt, truth = task(rng)
        chosen = truth if rng.random() < 0.6 else damage(truth, rng, most=1)
        rejected = damage(truth, rng)
        if rejected == chosen:
            rejected = damage(chosen, rng)
        judge = lambda ans: round(min(10.0, max(0.0, grade(ans, truth) + rng.gauss(0, 0.8))), 2)  # noqa: E731
        row = {"prompt": prompt, "chosen": chosen, "rejected": rejected,
               "score_chosen": judge(chosen), "score_rejected": judge(rejected)}
        if i % 2:
            row["prompt"] = [{"role": "user", "content": prompt}]
            row["chosen"] = [{"role": "assistant", "content": chosen}]
            row["rejected"] = [{"role": "assistant", "content": rejected}]
        rows.append(row)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name, part in (("toy_preferences_text.jsonl", rows[0::2]), ("toy_preferences_chat.jsonl", rows[1::2])):
        Path(folder, name).write_text("".join(json.dumps(r) + "\n" for r in part))
    median = statistics.median(r["score_chosen"] for r in rows)
    print(f"wrote {n} pairs to {folder}/toy_preferences_{{text,chat}}.jsonl; "
          f"median chosen score {median:.2f} (tau_good of the default recipe)")


if __name__ == "__main__":
    main()
