"""The generation back-ends' shared rules, on the transformers side (fast; vLLM itself:
tests/test_vllm_backend.py): end tokens from the generation config, stop ids and strings,
one seed per conversation, the checks before a back-end loads anything."""

import json

import pytest

from alignment_unidpo.generation import backends
from alignment_unidpo.generation.backends import Engine, TransformersGenerator, backend_problem, worker_settings
from alignment_unidpo.generation.decoding import Decoding, cut_at_stop
from alignment_unidpo.training.toy import build_toy_model, build_toy_tokenizer

CONVERSATIONS = [[{"role": "user", "content": f"what is {i} + {i}?"}] for i in range(3)]


@pytest.fixture(scope="module")
def hf():
    tokenizer = build_toy_tokenizer()
    return TransformersGenerator("unused", Engine(batch_size=2), loaded=(build_toy_model("toy:tiny-llama", tokenizer),
                                                                          tokenizer))


def test_the_generation_configs_end_tokens_end_the_answer_as_vllm_reads_them(hf):
    (reference,), = hf.sample(CONVERSATIONS[:1], Decoding(max_new_tokens=12))
    ids = reference["token_ids"]
    stop = next(t for k, t in enumerate(ids) if k >= 2 and t not in ids[:k])
    before = hf.model.generation_config.eos_token_id
    hf.model.generation_config.eos_token_id = [hf.tokenizer.eos_token_id, stop]
    try:
        (cut,), = hf.sample(CONVERSATIONS[:1], Decoding(max_new_tokens=12))
    finally:
        hf.model.generation_config.eos_token_id = before
    assert cut["token_ids"] == ids[:ids.index(stop) + 1] and cut["finished"]
    assert cut["num_tokens"] == ids.index(stop) + 1


def test_greedy_batches_give_the_answers_of_single_calls_and_n_copies(hf):
    together = hf.sample(CONVERSATIONS, Decoding(max_new_tokens=8), n=2)
    for conversation, answers in zip(CONVERSATIONS, together):
        (alone,), = hf.sample([conversation], Decoding(max_new_tokens=8))
        assert answers == [alone, alone]


def test_a_conversations_samples_depend_on_its_own_seed_only(hf):
    sampling = Decoding(max_new_tokens=8, temperature=1.0)
    together = hf.sample(CONVERSATIONS, sampling, n=2, seeds=[1, 2, 3])
    assert hf.sample(CONVERSATIONS[1:2], sampling, n=2, seeds=[2]) == together[1:2]
    assert hf.sample(CONVERSATIONS[1:2], sampling, n=2, seeds=[7]) != together[1:2]
    with pytest.raises(ValueError):
        hf.sample(CONVERSATIONS, sampling, n=2, seeds=[1])


def test_a_stop_string_is_cut_from_the_text_and_ends_the_answer():
    assert cut_at_stop("a\n\nQuestion: b", ("\n\nQuestion:", "zz")) == ("a", True)
    assert cut_at_stop("abc", ("zz",)) == ("abc", False)
    assert cut_at_stop("x</s>y<|im_end|>", ("<|im_end|>", "</s>")) == ("x", True)  # the earliest wins


def test_decoding_settings_without_stops_keep_the_keys_earlier_logs_were_keyed_by():
    assert set(Decoding().as_dict()) == {"max_new_tokens", "temperature", "top_p", "seed", "strategy"}
    assert Decoding(stop_token_ids=(5,), stop=("x",)).as_dict()["stop_token_ids"] == [5]


def test_a_backend_that_cannot_run_is_named_before_anything_loads(tmp_path, monkeypatch):
    monkeypatch.setenv(backends.VLLM_PYTHON_ENV, str(tmp_path / "no-venv" / "bin" / "python"))
    assert "unknown generation backend 'vllmm'; known: auto, transformers, vllm" == backend_problem("vllmm", "m")
    problem = backend_problem("vllm", "m")
    assert "make vllm-env" in problem and str(tmp_path / "no-venv") in problem
    assert backend_problem("transformers", "m") is None and backend_problem("auto", "m") is None
    assert backends.resolve_backend("auto") == "transformers"  # no vLLM environment here
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    monkeypatch.setenv(backends.VLLM_PYTHON_ENV, str(python))
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text("{}")
    assert "make merge RUN=" in backend_problem("vllm", str(tmp_path / "lora"))
    with pytest.raises(backends.GenerationError, match="make merge"):
        backends.open_generator(str(tmp_path / "lora"), Engine(backend="vllm"))


def test_vllm_loads_a_checkpoint_in_the_dtype_transformers_would(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "float32"}))
    assert worker_settings(str(tmp_path), Engine())["dtype"] == "float32"  # vLLM's own auto: 16 bits
    assert worker_settings(str(tmp_path), Engine(dtype="bfloat16"))["dtype"] == "bfloat16"
    assert worker_settings("org/hub-model", Engine())["dtype"] == "auto"


def test_each_launched_process_starts_its_vllm_engine_on_its_own_gpus():
    assert backends.worker_devices({"LOCAL_RANK": "3"}, 1) == {"CUDA_VISIBLE_DEVICES": "3"}
    assert backends.worker_devices({"LOCAL_RANK": "1"}, 2) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert backends.worker_devices({"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "5"}, 1) == {}  # set by the user
    assert backends.worker_devices({}, 1) == {}  # not launched: the engine sees what the process sees


class _Recorder(backends.Generator):
    """Answers each conversation with its own index; records the chunk sizes sample() saw."""

    def __init__(self, min_chunk: int):
        self.min_chunk, self.calls = min_chunk, []

    def sample(self, conversations, decoding, n=1, seeds=None):
        self.calls.append(len(conversations))
        return [[{"output": c}] for c in conversations]


@pytest.mark.parametrize("min_chunk, sizes", [(1, [3, 3, 3, 1]), (4, [4, 4, 2])])
def test_stream_yields_every_answer_in_order_in_chunks_of_at_least_min_chunk(min_chunk, sizes):
    generator = _Recorder(min_chunk)
    chunks = list(generator.stream(list(range(10)), Decoding(), chunk_size=3))
    assert generator.calls == sizes
    assert [p for positions, _ in chunks for p in positions] == list(range(10))
    assert [a["output"] for _, answers in chunks for a in answers] == list(range(10))
    assert backends.VllmGenerator.min_chunk == 256 and TransformersGenerator.min_chunk == 1
