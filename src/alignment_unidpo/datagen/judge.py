"""``score.scorer: openai_judge``: a chat model behind any OpenAI-compatible endpoint rates each answer 1-10.

The paper's GPT-4o ratings (appendix C.2) the way FastChat's ``single-v1`` judge asks for
them (:mod:`.judge_prompt`: the prompt, read at run time, and the ``[[rating]]`` parser), sent
to ``{score.judge_api_base}/chat/completions``: OpenAI's API, or an open judge served by
``vllm serve`` (the same protocol). One request per distinct (question, answer): the system
prompt and the filled template, ``temperature`` 0 and ``max_tokens`` 2048 as FastChat sends
them, ``n`` 1.

* **The key** is read from the environment variable ``score.judge_api_key_env`` (default
  ``OPENAI_API_KEY``) and sent only in the ``Authorization`` header: never in a config, a
  cache file, the stats, a log or an error message (:meth:`Judge.redact` masks it in any text
  a server sends back). A variable that is unset or empty is one ``error:`` line naming the
  variable before anything runs (:func:`key_problem`, the pipeline's input checks).
* **Concurrency**: at most ``score.judge_concurrency`` requests in flight (a thread pool).
* **Retries**: a 429, a 408, any 5xx, a timeout, a dropped connection or an unreadable 200
  are retried up to ``score.judge_max_retries`` times, waiting what ``Retry-After`` (or
  ``retry-after-ms``) says, else an exponential backoff (1 s, 2 s, 4 s, ... up to 60 s, with
  jitter); each retry is counted by cause. Any other answer (400, 401, 403, 404) stops the
  run at once with one line: the status and the server's message, key masked.
* **A persistent cache** of the ratings already received, ``ratings.jsonl`` in
  ``score.judge_cache`` (default ``<output_root>/judge-cache``), keyed by the sha256 of the
  judge's model, the prompt's version (:func:`~.judge_prompt.prompt_version`), the
  temperature, max_tokens, the question and the answer. Each rating is appended as one line
  the moment it arrives (one ``write`` under an exclusive lock, so processes sharing the
  file do not interleave), so a kill or a stop on a rate limit loses only the requests in
  flight and a rerun asks only what is missing. A line cut by a kill is skipped on reading
  and the next append starts on a new line. The endpoint is not part of the key: the same
  model rates the same way wherever it is served.
* **Ratings** are parsed as FastChat parses them; a judgment without one is cached with rating
  null (a rerun does not ask again) and reported to the caller as None (the scorer drops that
  answer and counts it, :func:`~.scorers.openai_judge_scorer`).
* **A progress bar** per shard (answers rated, from the cache, asked, retries, unparsable).

:meth:`Judge.stats` counts what this process did: answers, cached, asked, unparsable,
requests sent and retries per cause.
"""

from __future__ import annotations

import email.utils
import fcntl
import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import DataGenError
from ..base.paths import REPO_ROOT
from .judge_prompt import JudgePrompt, load_prompt, parse_rating, prompt_version

CACHE_FILE = "ratings.jsonl"
BACKOFF_S = 1.0  # the first wait without Retry-After; doubled each retry
BACKOFF_MAX_S = 60.0
MAX_WAIT_S = 600.0  # a Retry-After longer than this is cut to it
CONNECT_TIMEOUT_S = 10.0


class JudgeError(DataGenError):
    """The judge could not be asked (a refused request, retries exhausted); the key is never in it."""


@dataclass(frozen=True)
class JudgeSettings:
    """The ``score.judge_*`` keys (and ``score.model``), as the judge uses them."""

    api_base: str
    model: str
    api_key_env: str
    temperature: float
    max_tokens: int
    concurrency: int
    max_retries: int
    timeout: float
    cache_dir: Path

    @property
    def url(self) -> str:
        return self.api_base.rstrip("/") + "/chat/completions"


def cache_folder(cfg: dict[str, Any]) -> Path:
    """``score.judge_cache``, or ``<output_root>/judge-cache`` (a relative path is under the repository)."""
    folder = Path(cfg["score"]["judge_cache"] or Path(cfg["output_root"]) / "judge-cache")
    return folder if folder.is_absolute() else REPO_ROOT / folder


def settings_of(cfg: dict[str, Any]) -> JudgeSettings:
    s = cfg["score"]
    return JudgeSettings(api_base=str(s["judge_api_base"]), model=str(s["model"]),
                         api_key_env=str(s["judge_api_key_env"]), temperature=float(s["judge_temperature"]),
                         max_tokens=int(s["judge_max_tokens"]), concurrency=int(s["judge_concurrency"]),
                         max_retries=int(s["judge_max_retries"]), timeout=float(s["judge_timeout"]),
                         cache_dir=cache_folder(cfg))


def key_problem(cfg: dict[str, Any]) -> str | None:
    """Why the judge has no API key (naming the variable, never a value), or None."""
    env = cfg["score"]["judge_api_key_env"]
    if os.environ.get(env, "").strip():
        return None
    return (f"score.judge_api_key_env: the environment variable {env} is not set (the judge's API key; "
            "an open judge on `vllm serve` takes any non-empty value)")


def judge_problems(cfg: dict[str, Any]) -> list[str]:
    """What the judge needs before it runs: its key, and its prompt file when one is named."""
    found = [key_problem(cfg)]
    path = cfg["score"]["judge_prompt_file"]
    if path and not Path(path).is_file():
        found.append(f"score.judge_prompt_file: no such file {path!r} (the judge's prompts)")
    return [problem for problem in found if problem]


# --- the cache of ratings ----------------------------------------------------------------------
class RatingCache:
    """``ratings.jsonl``: one ``{key, model, prompt, prompt_sha256, rating, judgment, time}`` a line,
    appended as each rating arrives; read once when the judge is built."""

    def __init__(self, folder: Path):
        self.path = folder / CACHE_FILE
        self.table: dict[str, float | None] = {}
        self.torn_lines = 0
        if self.path.is_file():
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        rec = json.loads(line)
                        self.table[rec["key"]] = None if rec["rating"] is None else float(rec["rating"])
                    except (ValueError, KeyError, TypeError):
                        self.torn_lines += 1  # cut by a kill mid-write

    def __contains__(self, key: str) -> bool:
        return key in self.table

    def __getitem__(self, key: str) -> float | None:
        return self.table[key]

    def add(self, key: str, record: dict[str, Any]) -> None:
        """Append one record: one write, under an exclusive lock, starting on a fresh line."""
        line = (json.dumps({"key": key, **record}, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut by a kill: start a new one
                line = b"\n" + line
            os.write(fd, line)
        finally:
            os.close(fd)  # releases the lock
        self.table[key] = record["rating"]


def rating_key(settings: JudgeSettings, version: str, question: str, answer: str) -> str:
    body = {"model": settings.model, "prompt": version, "temperature": settings.temperature,
            "max_tokens": settings.max_tokens, "question": question, "answer": answer}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def retry_after(headers: Any) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, or ``Retry-After`` in seconds or as
    an HTTP date; None when it says nothing readable."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# --- the judge ---------------------------------------------------------------------------------
class Judge:
    """Rates (question, answer) pairs through one endpoint, with the cache, the retries and the
    concurrency limit of the module docstring."""

    def __init__(self, settings: JudgeSettings, prompt: JudgePrompt, api_key: str, progress: bool = True):
        self.settings, self.prompt, self.progress = settings, prompt, progress
        self._key = api_key
        self.version = prompt_version(prompt)
        self.cache = RatingCache(settings.cache_dir)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._stats: dict[str, Any] = {"answers": 0, "cached": 0, "asked": 0, "unparsable": 0, "empty": 0,
                                       "requests": 0, "retries": {}}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Judge":
        problem = key_problem(cfg)
        if problem:
            raise DataGenError(f"{cfg.get('config_path', 'config')}: {problem}")
        s = cfg["score"]
        settings = settings_of(cfg)
        prompt = load_prompt(str(s["judge_prompt"]), s["judge_prompt_file"])
        return cls(settings, prompt, os.environ[settings.api_key_env].strip(), progress=cfg.get("progress", True))

    def stats(self) -> dict[str, Any]:
        """What this process did so far (a copy): answers, cached, asked, unparsable, empty,
        requests sent, retries per cause; and the judge, prompt and endpoint they went to."""
        with self._lock:
            out = json.loads(json.dumps(self._stats))
        out.update({"model": self.settings.model, "endpoint": self.redact(self.settings.api_base),
                    "prompt": self.prompt.name, "prompt_source": self.prompt.source, "prompt_sha256": self.version,
                    "cache": str(self.cache.path)})
        return out

    def redact(self, text: str) -> str:
        """``text`` with the API key masked (a server may echo it in an error)."""
        return text.replace(self._key, "[API key]") if self._key else text

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n

    def _count_retry(self, cause: str) -> None:
        with self._lock:
            self._stats["retries"][cause] = self._stats["retries"].get(cause, 0) + 1

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _refused(self, response: Any) -> JudgeError:
        try:
            body = response.json()
            message = body["error"]["message"] if isinstance(body.get("error"), dict) else json.dumps(body)
        except (ValueError, KeyError, TypeError, AttributeError):
            message = response.text
        message = " ".join(str(message).split())[:300]
        hint = f" (check {self.settings.api_key_env})" if response.status_code in (401, 403) else ""
        return JudgeError(self.redact(f"score: the judge at {self.settings.url} answered {response.status_code} "
                                      f"{response.reason or ''}: {message}{hint}"))

    def ask(self, messages: list[dict[str, str]]) -> str:
        """The judge's text for one conversation, retried as the module docstring says."""
        import requests

        s = self.settings
        body = {"model": s.model, "messages": messages, "temperature": s.temperature, "max_tokens": s.max_tokens,
                "n": 1}
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"}
        last = ""
        for attempt in range(s.max_retries + 1):
            if self._stop.is_set():
                raise JudgeError("score: the judge was stopped")
            wait = None
            self._count("requests")
            try:
                response = self._session().post(s.url, json=body, headers=headers,
                                                timeout=(CONNECT_TIMEOUT_S, s.timeout))
            except requests.Timeout:
                cause, last = "timeout", f"no answer within {s.timeout:g} s"
            except requests.ConnectionError as err:
                cause, last = "connection", f"connection failed ({type(err).__name__})"
            else:
                code = response.status_code
                if code == 200:
                    try:
                        content = response.json()["choices"][0]["message"]["content"]
                        return content if isinstance(content, str) else ""
                    except (ValueError, KeyError, IndexError, TypeError):
                        cause, last = "bad_response", "a 200 without choices[0].message.content"
                elif code in (408, 429) or code >= 500:
                    cause, last, wait = str(code), f"{code} {response.reason or ''}".strip(), retry_after(
                        response.headers)
                else:
                    raise self._refused(response)
            if attempt == s.max_retries:
                break
            self._count_retry(cause)
            delay = min(wait, MAX_WAIT_S) if wait is not None else \
                min(BACKOFF_MAX_S, BACKOFF_S * 2 ** attempt) * (0.5 + random.random() / 2)
            if self._stop.wait(delay):
                raise JudgeError("score: the judge was stopped")
        raise JudgeError(self.redact(f"score: the judge at {s.url}: {last} after {s.max_retries} retries "
                                     "(score.judge_max_retries); the ratings received so far are cached in "
                                     f"{self.cache.path}: rerun to go on"))

    def _rate_one(self, key: str, question: str, answer: str) -> float | None:
        judgment = self.ask(self.prompt.messages(question, answer))
        rating = parse_rating(judgment)
        self.cache.add(key, {"model": self.settings.model, "prompt": self.prompt.name, "prompt_sha256": self.version,
                             "rating": rating, "judgment": judgment, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self._count("asked")
        return rating

    def rate(self, items: list[tuple[str, str]], desc: str = "judge") -> list[float | None]:
        """The rating of each (question, answer); None for an empty answer (not asked) and for a
        judgment without a rating. Cached pairs are not asked, a pair that occurs twice is asked
        once, the others at most ``concurrency`` at a time. Stops on the first
        :class:`JudgeError` or interrupt, the ratings received until then cached."""
        from tqdm.auto import tqdm

        keys = [None if not a.strip() else rating_key(self.settings, self.version, q, a) for q, a in items]
        uses = Counter(keys)
        todo = {k: item for k, item in zip(keys, items) if k is not None and k not in self.cache}
        waiting = sum(uses[k] for k in todo)
        self._count("answers", len(items))
        self._count("empty", uses[None])
        self._count("cached", len(items) - uses[None] - waiting)
        bar = tqdm(total=len(items), initial=len(items) - waiting, unit="answer", desc=desc,
                   disable=not self.progress, leave=False)
        self._stop.clear()
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="judge")
        no_rating = 0
        try:
            futures = {pool.submit(self._rate_one, k, *item): k for k, item in todo.items()}
            for future in as_completed(futures):
                no_rating += future.result() is None
                bar.update(uses[futures[future]])
                with self._lock:
                    st = self._stats
                    bar.set_postfix(cached=st["cached"], asked=st["asked"], retries=sum(st["retries"].values()),
                                    no_rating=no_rating, refresh=False)
        except BaseException:
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
        pool.shutdown(wait=True)
        ratings = [None if k is None else self.cache[k] for k in keys]
        self._count("unparsable", sum(k is not None and r is None for k, r in zip(keys, ratings)))
        return ratings
