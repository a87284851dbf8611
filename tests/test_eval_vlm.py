"""``make eval SUITE=vlm`` (evaluation/vlm_suite.py): VLMEvalKit's config and command for a
Qwen2-VL folder, refusals before anything is written, and VLMEvalKit's result files (laid out
as run.py and each dataset's evaluate() write them at the pinned commit) read back beside
Table D.4. Fast, offline: no model is loaded (the folders hold a config.json only)."""

import csv
import json
from pathlib import Path

import pytest

from alignment_unidpo import eval_cli
from alignment_unidpo.evaluation import vlm_suite
from alignment_unidpo.evaluation.paper_numbers import TABLE_D4_COLUMNS


def qwen2_vl_run(root: Path, name: str = "qwen2-vl-2b", model_type: str = "qwen2_vl",
                 processor: bool = True) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model_type": model_type}))
    if processor:
        (run / "preprocessor_config.json").write_text("{}")
    return run


def dump_csv(path: Path, columns: dict[str, list]) -> None:
    """As VLMEvalKit's dump() writes a DataFrame to .csv: header, no index, every field quoted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(list(columns))
        writer.writerows(zip(*columns.values()))


# per dataset: the file (after <model>_<dataset>) and its content, the number Table D.4's scale gives
def write_vlmevalkit_results(folder: Path, model: str, skip: tuple[str, ...] = ()) -> dict[str, float]:
    expected = {}

    def put(column, suffix, write, value):
        if column in skip:
            return
        write(folder / f"{model}_{vlm_suite.BENCHMARKS[column].dataset}{suffix}")
        expected[column] = value

    # ImageVQADataset: _acc.csv, one row, percent already (ChartQA with its splits as columns)
    put("chartqa_test", "_acc.csv", lambda p: dump_csv(p, {"test_human": [10.0], "test_augmented": [20.0],
                                                            "Overall": [15.0]}), 15.0)
    put("infovqa_val", "_acc.csv", lambda p: dump_csv(p, {"Overall": [41.25]}), 41.25)
    put("textvqa", "_acc.csv", lambda p: dump_csv(p, {"Overall": [62.5]}), 62.5)
    # OCRBench: _score.json, Final Score of 1000
    put("ocrbench", "_score.json", lambda p: p.write_text(json.dumps(
        {"Text Recognition": 200, "Scene Text-centric VQA": 150, "Doc-oriented VQA": 120,
         "Key Information Extraction": 130, "Handwritten Mathematical Expression Recognition": 80,
         "Final Score": 680, "Final Score Norm": 68.0}, indent=4)), 680.0)
    # POPE_rating: a row per split; the Overall row's Overall (F1 x100)
    put("pope", "_score.csv", lambda p: dump_csv(p, {"split": ["Overall", "adversarial", "random"],
                                                      "Overall": [81.5, 79.0, 84.0], "acc": [83.0, 80.0, 86.0],
                                                      "precision": [90.0, 88.0, 92.0],
                                                      "recall": [74.0, 72.0, 77.0]}), 81.5)
    # MME_rating: perception and reasoning, then each subtask
    put("mme", "_score.csv", lambda p: dump_csv(p, {"perception": [1400.25], "reasoning": [350.5],
                                                     "OCR": [110.0], "artwork": [120.0]}), 1750.75)
    # report_acc: fractions, one row per split
    put("mmbench_dev_en", "_acc.csv", lambda p: dump_csv(p, {"split": ["dev"], "Overall": [0.5625],
                                                              "AR": [0.5], "CP": [0.6]}), 56.25)
    put("seedbench_image", "_acc.csv", lambda p: dump_csv(p, {"split": ["none"], "Overall": [0.6]}), 60.0)
    put("scienceqa_val", "_acc.csv", lambda p: dump_csv(p, {"split": ["val"], "Overall": [0.66]}), 66.0)
    put("realworldqa", "_acc.csv", lambda p: dump_csv(p, {"split": ["none"], "Overall": [0.545]}), 54.5)
    return expected


def run_vlm(argv, capsys):
    code = eval_cli.main(argv)
    captured = capsys.readouterr()
    return code, captured


def test_config_has_the_ten_datasets_and_the_model_and_the_command_is_printed(tmp_path, capsys):
    run = qwen2_vl_run(tmp_path)
    code, captured = run_vlm([str(run), "--suite=vlm"], capsys)
    assert code == 0, captured.err
    out = run / "eval" / "vlm"
    config = json.loads((out / "vlmevalkit_config.json").read_text())
    assert config["model"] == {"qwen2-vl-2b": {"class": "Qwen2VLChat", "model_path": str(run.resolve())}}
    assert list(config["data"]) == ["ChartQA_TEST", "InfoVQA_VAL", "OCRBench", "TextVQA_VAL", "POPE", "MME",
                                    "MMBench_DEV_EN", "SEEDBench_IMG", "ScienceQA_VAL", "RealWorldQA"]
    assert config["data"]["MME"] == {"class": "ImageYORNDataset", "dataset": "MME"}
    assert config["data"]["OCRBench"] == {"class": "OCRBench", "dataset": "OCRBench"}
    assert config["data"]["ScienceQA_VAL"]["class"] == "ImageMCQDataset"
    command = (f"python run.py --config {(out / 'vlmevalkit_config.json').resolve()} "
               f"--work-dir {(out / 'vlmevalkit').resolve()}")
    assert command in captured.err
    assert f"checkout {vlm_suite.VLMEVALKIT_COMMIT}" in captured.err
    assert vlm_suite.AUTHORS_MODEL_SHA256 in captured.err and "pip install -e ." in captured.err
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["run"].endswith(command) and result["read"] == 0 and result["not_run"] == list(TABLE_D4_COLUMNS)
    text = (out / "results.md").read_text()
    assert command in text and "| ours | " + " | ".join(["not run"] * 10) + " |" in text
    # Table D.4's numbers for the recipe (the folder's name) and its Baseline
    assert "| paper (Table D.4, Qwen2-VL-2B, Uni-DPO) | 13.84 | 45.28 | 709 | 73.23 | 86.03 | 1905.1 | 63.75 | " \
           "70.83 | 68.10 | 55.29 |" in text
    assert "| paper (Table D.4, Qwen2-VL-2B, Baseline) | 5.04 | 37.77 | 669 | 50.21 | 79.55 | 1744.7 | 50.09 | " \
           "53.98 | 65.57 | 53.86 |" in text
    saved = json.loads((out / "results.json").read_text())
    toolkit = saved["settings"]["vlmevalkit"]
    assert toolkit["commit"] == vlm_suite.VLMEVALKIT_COMMIT and toolkit["version"] == "0.2rc1"
    assert "transformers" in saved["settings"]["versions"]
    assert saved["paper"][0]["numbers"]["mme"] == 1905.1


def test_results_are_read_back_each_to_its_column_and_scale(tmp_path, capsys):
    run = qwen2_vl_run(tmp_path, "dpo-qwen2-vl-2b")
    # run.py's layout: <work dir>/<model>/T<date>_G<commit>/ holds the files, links to them beside it;
    # a copy without the links is read from the newest such folder
    work = run / "eval" / "vlm" / "vlmevalkit" / "dpo-qwen2-vl-2b"
    write_vlmevalkit_results(work / "T20250101_Gdeadbeef", "dpo-qwen2-vl-2b")  # older: not read
    (work / "T20250101_Gdeadbeef" / "dpo-qwen2-vl-2b_MME_score.csv").write_text('"perception","reasoning"\n"1","2"\n')
    expected = write_vlmevalkit_results(work / "T20250301_G12345678", "dpo-qwen2-vl-2b")
    code, captured = run_vlm([str(run), "--suite=vlm"], capsys)
    assert code == 0, captured.err
    saved = json.loads((run / "eval" / "vlm" / "results.json").read_text())
    got = {c: saved["benchmarks"][c]["ours"] for c in TABLE_D4_COLUMNS}
    assert got == pytest.approx(expected) and set(got) == set(TABLE_D4_COLUMNS)
    assert saved["benchmarks"]["pope"]["detail"]["acc"] == 83.0
    assert saved["benchmarks"]["mme"]["file"].endswith("T20250301_G12345678/dpo-qwen2-vl-2b_MME_score.csv")
    text = (run / "eval" / "vlm" / "results.md").read_text()
    assert ("| ours | 15.00 | 41.25 | 680 | 62.50 | 81.50 | 1750.8 | 56.25 | 60.00 | 66.00 | 54.50 |" in text)
    assert "| paper (Table D.4, Qwen2-VL-2B, DPO) | 6.40 | 39.73 | 677 |" in text and "Not run yet" not in text


def test_a_missing_benchmark_is_not_run_and_vlm_results_names_another_work_dir(tmp_path, capsys):
    run = qwen2_vl_run(tmp_path, "simpo-qwen2-vl-2b")
    work = tmp_path / "elsewhere"
    expected = write_vlmevalkit_results(work / "my-model", "my-model", skip=("infovqa_val", "realworldqa"))
    code, captured = run_vlm([str(run), "--suite=vlm", f"--vlm_results={work}", "--model_id=my-model"], capsys)
    assert code == 0, captured.err
    saved = json.loads((run / "eval" / "vlm" / "results.json").read_text())
    assert saved["benchmarks"]["infovqa_val"]["ours"] is None and saved["benchmarks"]["infovqa_val"]["file"] is None
    assert saved["benchmarks"]["ocrbench"]["ours"] == expected["ocrbench"]
    config = json.loads((run / "eval" / "vlm" / "vlmevalkit_config.json").read_text())
    assert list(config["model"]) == ["my-model"]
    text = (run / "eval" / "vlm" / "results.md").read_text()
    assert "| ours | 15.00 | not run | 680 |" in text and text.count("| not run |") >= 2
    assert "Not run yet (2 of 10): InfoVQA val, RealWorldQA." in text
    assert "| paper (Table D.4, Qwen2-VL-2B, SimPO) | 11.68 |" in text
    assert f"--work-dir {work.resolve()}" in captured.err


@pytest.mark.parametrize("make, argv, message", [
    (lambda t: qwen2_vl_run(t, "plain", model_type="llama"), [],
     "is not a Qwen2-VL model (config.json model_type 'llama'; SUITE=vlm needs qwen2_vl)"),
    (lambda t: qwen2_vl_run(t, "q25", model_type="qwen2_5_vl"), [], "SUITE=vlm takes model_type qwen2_vl only"),
    (lambda t: qwen2_vl_run(t, "noproc", processor=False), [], "has no preprocessor_config.json"),
    (lambda t: qwen2_vl_run(t), ["--vlm_results=/no/such/dir"], "--vlm_results=/no/such/dir: no such folder"),
    (lambda t: qwen2_vl_run(t), ["--model_id=a b"], "--model_id=a b: VLMEvalKit names its files after it"),
    (lambda t: qwen2_vl_run(t), ["--limit=3"], "--limit does not apply to SUITE=vlm"),
])
def test_bad_input_is_one_error_line_before_anything_is_written(tmp_path, capsys, make, argv, message):
    run = make(tmp_path)
    code, captured = run_vlm([str(run), "--suite=vlm", *argv], capsys)
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert not (run / "eval").exists()


def test_a_lora_adapter_is_refused_with_the_merge_command(tmp_path, capsys):
    run = tmp_path / "lora-run"
    run.mkdir()
    (run / "adapter_config.json").write_text("{}")
    code, captured = run_vlm([str(run), "--suite=vlm"], capsys)
    assert code == 2 and f"make merge RUN={run}" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_a_malformed_result_file_is_one_error_line(tmp_path, capsys):
    run = qwen2_vl_run(tmp_path)
    work = tmp_path / "work"
    dump_csv(work / "qwen2-vl-2b" / "qwen2-vl-2b_POPE_score.csv", {"split": ["random"], "Overall": [1.0]})
    code, captured = run_vlm([str(run), "--suite=vlm", f"--vlm_results={work}"], capsys)
    assert code == 2 and "qwen2-vl-2b_POPE_score.csv: no row with split 'Overall'" in captured.err
    assert not (run / "eval").exists()


def test_the_dry_run_lists_the_suite_and_writes_nothing(tmp_path, capsys):
    run = qwen2_vl_run(tmp_path)
    code, captured = run_vlm([str(run), "--suite=vlm", "--dry_run"], capsys)
    assert code == 0
    plan = json.loads(captured.out)
    assert plan["suite"] == "vlm" and "vlm_results" in plan["options"] and not (run / "eval").exists()
