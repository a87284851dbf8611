"""One generation interface, two back-ends: ``transformers`` in this process, ``vllm`` in its own environment.

:func:`open_generator` returns a :class:`Generator` for a model folder or hub id; its
:meth:`~Generator.sample` takes conversations, a :class:`~.decoding.Decoding`, the number
of answers per conversation and one seed per conversation, and returns, per conversation
and in order, ``n`` answers ``{"output", "token_ids", "num_tokens", "finished"}``. The
two back-ends share the chat template (the model's own, with the generation prompt), the end
tokens (the generation config's eos list, the tokenizer's eos, ``Decoding.stop_token_ids``),
the stop strings and the meaning of a seed: **conversation i's answers depend only on the
conversation, the settings and ``seeds[i]``**, never on what else is in the call. (The same
seed gives different answers in the two back-ends: their random streams differ. Greedy
answers are the same token ids where the model's top-2 logit gap is not at rounding level;
``tests/test_vllm_backend.py``.)

vLLM lives in its own virtual environment (``make vllm-env``; docs/vllm.md says why: no
transformers version serves both vLLM and the training code). :class:`VllmGenerator` starts
:mod:`.vllm_worker` with that environment's Python and talks to it over pipes, so one
engine serves every call until :meth:`~Generator.close`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..base.errors import InputError
from ..base.paths import REPO_ROOT

if TYPE_CHECKING:  # decoding imports torch and transformers: loaded with a generator, not with a config
    from .decoding import Decoding

BACKENDS = ("auto", "transformers", "vllm")
VLLM_PYTHON_ENV = "ALIGNMENT_UNIDPO_VLLM_PYTHON"
VLLM_VENV = REPO_ROOT / ".venv-vllm"
Conversation = Sequence[dict[str, str]]


class GenerationError(InputError):
    """A generation back-end that cannot run as asked (told before any model loads)."""


@dataclasses.dataclass(frozen=True)
class Engine:
    """How answers are generated (not what: that is :class:`~.decoding.Decoding`)."""

    backend: str = "transformers"  # one of BACKENDS; "auto": vllm where its environment and a GPU are present
    dtype: str = "auto"
    trust_remote_code: bool = False
    batch_size: int = 8  # transformers: conversations per generate call (vLLM schedules its own batches)
    tensor_parallel_size: int = 1  # vllm: GPUs per engine
    gpu_memory_utilization: float = 0.9  # vllm
    max_model_len: int | None = None  # vllm: None = the model's own
    kv_cache_gib: int = 1  # vllm on CPU: VLLM_CPU_KVCACHE_SPACE
    enforce_eager: bool = False  # vllm: no torch.compile / CUDA graphs (starts faster, decodes slower)


def vllm_python() -> Path:
    """The Python of the vLLM environment: ``$ALIGNMENT_UNIDPO_VLLM_PYTHON`` or ``.venv-vllm/bin/python``."""
    return Path(os.environ.get(VLLM_PYTHON_ENV) or VLLM_VENV / "bin" / "python")


def vllm_available() -> bool:
    return vllm_python().is_file()


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``vllm`` where the vLLM environment exists and a GPU is visible, else ``transformers``
    (vLLM on CPU is opt-in: ``backend=vllm``)."""
    if backend != "auto":
        return backend
    if vllm_available():
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "transformers"


def backend_problem(backend: str, model: str) -> str | None:
    """Why ``backend`` cannot generate from ``model``, before anything loads (None: it can)."""
    if backend not in BACKENDS:
        return f"unknown generation backend {backend!r}; known: {', '.join(BACKENDS)}"
    if resolve_backend(backend) != "vllm":
        return None
    if not vllm_available():
        return (f"backend vllm needs the vLLM environment, and {vllm_python()} does not exist: run `make vllm-env` "
                f"(or point ${VLLM_PYTHON_ENV} at a Python with vLLM)")
    if (Path(model) / "adapter_config.json").is_file():
        return (f"{model} is a LoRA run and vLLM loads full models: `make merge RUN={model}`, then generate from "
                f"{Path(model) / 'merged'}")
    return None


class Generator:
    """``sample(conversations, decoding, n, seeds)`` -> n answers per conversation, in order."""

    backend = ""
    min_chunk = 1  # the fewest conversations a stream() call hands to sample() (the last chunk aside)

    def sample(self, conversations: Sequence[Conversation], decoding: Decoding, n: int = 1,
               seeds: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
        raise NotImplementedError

    def stream(self, conversations: Sequence[Conversation], decoding: "Decoding",
               chunk_size: int) -> "Iterator[tuple[range, list[dict[str, Any]]]]":
        """One answer per conversation, ``(positions, answers)`` a chunk at a time, so that a
        caller can write them as they come (and resume); at least :attr:`min_chunk` a call."""
        size = max(chunk_size, self.min_chunk)
        for start in range(0, len(conversations), size):
            part = conversations[start:start + size]
            yield range(start, start + len(part)), [answers[0] for answers in self.sample(part, decoding)]

    def close(self) -> None:
        pass

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TransformersGenerator(Generator):
    """``transformers.generate``: greedy calls batch ``batch_size`` conversations; a sampled
    conversation is one call of its ``n`` answers after ``torch.manual_seed(seed)``."""

    backend = "transformers"

    def __init__(self, model: str, engine: Engine = Engine(), loaded: tuple[Any, Any] | None = None):
        from .decoding import load_model_and_tokenizer

        self.model, self.tokenizer = loaded or load_model_and_tokenizer(
            model, dtype=engine.dtype, trust_remote_code=engine.trust_remote_code)
        self.batch_size = engine.batch_size

    def sample(self, conversations, decoding, n=1, seeds=None):
        import torch

        from .decoding import generate_batch

        conversations = list(conversations)
        if decoding.greedy:
            flat = [row for start in range(0, len(conversations), self.batch_size)
                    for row in generate_batch(self.model, self.tokenizer, conversations[start:start + self.batch_size],
                                              decoding)]
            return [[dict(row) for _ in range(n)] for row in flat]  # greedy: the n answers are one answer
        seeds = list(seeds) if seeds is not None else [decoding.seed] * len(conversations)
        answers = []
        for conversation, seed in zip(conversations, seeds, strict=True):
            torch.manual_seed(seed)
            answers.append(generate_batch(self.model, self.tokenizer, [conversation], decoding, num_return_sequences=n))
        return answers


class VllmGenerator(Generator):
    """vLLM's offline ``LLM.chat`` in :mod:`.vllm_worker`, run by the vLLM environment's Python.
    One engine for the generator's life; each conversation is its own request with its own
    ``SamplingParams(n, seed)``."""

    backend = "vllm"
    min_chunk = 256  # vLLM schedules its own batches: hand it many conversations a call

    def __init__(self, model: str, engine: Engine = Engine()):
        problem = backend_problem("vllm", model)
        if problem:
            raise GenerationError(problem)
        src = Path(__file__).resolve().parents[2]  # the worker runs this very package, not an installed copy
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
               "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", str(engine.kv_cache_gib)),
               **worker_devices(os.environ, engine.tensor_parallel_size)}
        self.process = subprocess.Popen([str(vllm_python()), "-m", "alignment_unidpo.generation.vllm_worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self.settings = worker_settings(model, engine)
        self._call(self.settings)

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"the vLLM worker ({vllm_python()}) exited with status {code}; its output is above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the vLLM worker failed: {reply['error']}")
        return reply

    def sample(self, conversations, decoding, n=1, seeds=None):
        conversations = [list(c) for c in conversations]
        seeds = list(seeds) if seeds is not None else [decoding.seed] * len(conversations)
        if len(seeds) != len(conversations):
            raise ValueError(f"{len(seeds)} seeds for {len(conversations)} conversations")
        reply = self._call({"conversations": conversations, "n": n, "seeds": seeds,
                            "decoding": dataclasses.asdict(decoding)})
        return reply["answers"]

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def worker_devices(environ: dict[str, str], tensor_parallel_size: int) -> dict[str, str]:
    """Data parallel under ``accelerate launch``: the engine of local process r takes GPUs
    r*tp .. r*tp+tp-1 (tp: ``tensor_parallel_size``), unless CUDA_VISIBLE_DEVICES already says
    which (the one-process-per-GPU loop of docs/make-data.md sets it)."""
    if "LOCAL_RANK" not in environ or "CUDA_VISIBLE_DEVICES" in environ:
        return {}
    first = int(environ["LOCAL_RANK"]) * tensor_parallel_size
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(first + k) for k in range(tensor_parallel_size))}


def saved_dtype(model: str) -> str | None:
    """The dtype a local model folder was saved in (its config.json), else None."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text())
    return values.get("dtype") or values.get("torch_dtype")


def worker_settings(model: str, engine: Engine) -> dict[str, Any]:
    """The engine settings :mod:`.vllm_worker` reads. ``dtype: auto`` becomes the dtype the
    checkpoint was saved in, as transformers loads it: vLLM's own ``auto`` runs a float32
    checkpoint in 16 bits (measured: 2 of 4 greedy answers of a float32 toy model changed)."""
    dtype = engine.dtype if engine.dtype != "auto" else (saved_dtype(model) or "auto")
    return {"model": str(model), "dtype": dtype, "trust_remote_code": engine.trust_remote_code,
            "tensor_parallel_size": engine.tensor_parallel_size,
            "gpu_memory_utilization": engine.gpu_memory_utilization, "max_model_len": engine.max_model_len,
            "enforce_eager": engine.enforce_eager}


def open_generator(model: str, engine: Engine = Engine()) -> Generator:
    """A :class:`Generator` of ``engine.backend`` (``auto`` resolved) for ``model``."""
    problem = backend_problem(engine.backend, model)
    if problem:
        raise GenerationError(problem)
    if resolve_backend(engine.backend) == "vllm":
        return VllmGenerator(model, engine)
    return TransformersGenerator(model, engine)

