"""The trial table of docs/trials.md: bad (and borderline) inputs a new user tried, and what
each stage now does with them, run in-process through each entry point's own ``main``.

    python scripts/trials.py            # print the table
    python scripts/trials.py --write    # regenerate docs/trials.md (make trials)
    python scripts/trials.py --check    # exit 1 when docs/trials.md differs (tests/test_trials.py)

Every trial runs in a fresh temporary folder (shown as ``<tmp>``), offline, with an empty
Hugging Face cache and no W&B credentials, so the table is the same on every machine.
Nothing here launches a training process: a launch is recorded instead of run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "trials.md"
# Before any Hugging Face import: offline, and a cache that holds nothing.
SANDBOX = Path(tempfile.mkdtemp(prefix="trials-"))
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_CACHE=str(SANDBOX / "hub"),
                  HF_DATASETS_CACHE=str(SANDBOX / "datasets"), NETRC=str(SANDBOX / "no-netrc"),
                  TOKENIZERS_PARALLELISM="false")
for var in ("WANDB_API_KEY", "WANDB_MODE"):
    os.environ.pop(var, None)
sys.path.insert(0, str(REPO_ROOT / "src"))

TOY_TEXT = REPO_ROOT / "data" / "toy_preferences_text.jsonl"
PAPER_CPU = ["--model_name_or_path=toy:tiny-llama", f"--dataset_mixture=[{{path: {TOY_TEXT}}}]",
             "--attn_implementation=sdpa", "--bf16=false", "--num_processes=1", "--accelerate_config=single",
             "--global_batch_size=4", "--max_steps=1"]


@dataclasses.dataclass
class Trial:
    stage: str
    what: str                                   # the input, as a user would describe it
    entry: str                                  # "module:function", called with argv
    argv: Callable[[Path], list[str]]           # built in the trial's own folder
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    show: Callable[[int, str, list[str]], str] | None = None  # what to print instead of the stderr lines


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def pair(i: int, **extra) -> dict:
    return {"prompt": f"Reverse the word: w{i}", "chosen": f"{i}w", "rejected": f"x{i}", "score_chosen": 8.0,
            "score_rejected": 3.0, **extra}


def dry_run_field(*keys: str) -> Callable[[int, str, list[str]], str]:
    """Show a value of the dry run's JSON (and any warnings)."""
    def show(code: int, out: str, err: list[str]) -> str:
        value = json.loads(out[out.index("{"):])
        for key in keys:
            value = value[key]
        return f"dry run prints `{'.'.join(keys)}: {json.dumps(value)}`" + "".join(f"<br>{line}" for line in err)
    return show


TRAIN = "alignment_unidpo.recipes:main"
TRIALS = [
    Trial("train", "paper recipe as shipped (`report_to: wandb`), no W&B credentials", TRAIN,
          lambda t: ["llama3-8b-base-v0.2", *PAPER_CPU, f"--output_dir={t}/run"]),
    Trial("train", "the same with `WANDB_MODE=offline`", TRAIN,
          lambda t: ["llama3-8b-base-v0.2", *PAPER_CPU, f"--output_dir={t}/run"], env={"WANDB_MODE": "offline"}),
    Trial("train", "paper recipe dry run, offline, nothing downloaded", TRAIN,
          lambda t: ["qwen2.5-math-7b", "--dry_run"], show=dry_run_field("training", "report_to")),
    Trial("train", "hub model not in the local cache, `HF_HUB_OFFLINE=1`", TRAIN,
          lambda t: ["default", "--model_name_or_path=org/not-downloaded", "--tokenizer_name_or_path=toy:tiny-llama",
                     f"--output_dir={t}/run"]),
    Trial("train", "`output_dir` below a file", TRAIN,
          lambda t: ["default", f"--output_dir={write(t / 'notes.txt', 'x')}/run"]),
    Trial("train", "every prompt longer than `max_length`", TRAIN,
          lambda t: ["default", "--max_length=20", "--max_prompt_length=10", f"--output_dir={t}/run"]),
    Trial("train", "fewer rows than `test_split_size`", TRAIN,
          lambda t: ["default", "--test_split_size=500", f"--output_dir={t}/run"]),
    Trial("train", "`eval_strategy: steps` with no eval data", TRAIN,
          lambda t: ["default", "--test_split_size=0", "--eval_strategy=steps", f"--output_dir={t}/run"]),
    Trial("train", "a recipe with a key written twice", TRAIN,
          lambda t: [str(write(t / "dup.yaml", "base: default\nbeta: 1.0\nbeta: 2.0\n")), "--dry_run"]),
    Trial("train", "an empty recipe file", TRAIN,
          lambda t: [str(write(t / "empty.yaml", "# to do\n")), "--dry_run"]),
    Trial("train", "`--trust_remote_code=no`", TRAIN, lambda t: ["default", "--trust_remote_code=no", "--dry_run"],
          show=dry_run_field("model", "trust_remote_code")),
    Trial("train", "`--use_peft=maybe`", TRAIN, lambda t: ["default", "--use_peft=maybe", "--dry_run"]),
    Trial("train", "`--torch_dtype=float64`", TRAIN, lambda t: ["default", "--torch_dtype=float64", "--dry_run"]),
    Trial("train", "a bad row in a local data file", TRAIN,
          lambda t: ["default", f"--dataset_mixture=[{{path: {jsonl(t / 'd.jsonl', [pair(0), pair(1, score_chosen='hi')])}}}]",
                     f"--output_dir={t}/run"]),
]

DATA = "alignment_unidpo.data_cli:main"


def data_config(t: Path, model: str, judge: bool = True) -> str:
    """A jsonl-prompt data config with an external judge, in the trial's folder."""
    prompts = jsonl(t / "prompts.jsonl", [{"prompt": "Say hi"}, {"prompt": "Count to 3"}])
    if judge:
        jsonl(t / "judge.jsonl", [])
    return str(write(t / "data.yaml", f"name: t\noutput_root: {t}/out\nprompts: {{source: jsonl, path: {prompts}}}\n"
                                      f"generate: {{model: {model}}}\nscore: {{scorer: external, path: {t}/judge.jsonl}}\n"))


TRIALS += [
    Trial("data", "`--generate.temperature=-1`", DATA, lambda t: [f"--output_root={t}", "--generate.temperature=-1"]),
    Trial("data", "`--generate.num_samples=abc`", DATA, lambda t: [f"--output_root={t}", "--generate.num_samples=abc"]),
    Trial("data", "`--generate.top_p=0`", DATA, lambda t: [f"--output_root={t}", "--generate.top_p=0"]),
    Trial("data", "a local model folder that does not exist", DATA, lambda t: [data_config(t, "./no-such-model")]),
    Trial("data", "the external judge's file missing", DATA, lambda t: [data_config(t, str(t), judge=False)]),
    Trial("data", "hub model not in the local cache, `HF_HUB_OFFLINE=1`", DATA,
          lambda t: [data_config(t, "org/not-downloaded")]),
    Trial("data", "`--generate.trust_remote_code=no`", DATA,
          lambda t: [f"--output_root={t}", "--generate.trust_remote_code=no", "--dry_run"],
          show=dry_run_field("trust_remote_code")),
    Trial("data", "`--score.trust_remote_code=maybe`", DATA,
          lambda t: [f"--output_root={t}", "--score.trust_remote_code=maybe"]),
]

EVAL = "alignment_unidpo.eval_cli:main"
PREDICTIONS = REPO_ROOT / "tests" / "fixtures" / "eval" / "predictions.jsonl"
TRIALS += [
    Trial("eval", "`RUN=outputs/nope`, no SUITE", EVAL, lambda t: [f"{t}/nope"]),
    Trial("eval", "an existing folder that is not a world run, no SUITE", EVAL, lambda t: [str(t)]),
    Trial("eval", "`--benchmarks=` with PREDICTIONS", EVAL,
          lambda t: ["--suite=math", f"--predictions={PREDICTIONS}", "--benchmarks=", f"--out={t}/eval"]),
    Trial("eval", "`--benchmarks=amc23` with PREDICTIONS that have none", EVAL,
          lambda t: ["--suite=math", f"--predictions={PREDICTIONS}", "--benchmarks=amc23", f"--out={t}/eval"]),
    Trial("eval", "`--limit=2` in grade-only mode", EVAL,
          lambda t: ["--suite=math", f"--predictions={PREDICTIONS}", "--limit=2", f"--out={t}/eval"]),
    Trial("eval", "`--out` below a file", EVAL,
          lambda t: ["--suite=math", f"--predictions={PREDICTIONS}", f"--out={write(t / 'f', 'x')}/eval"]),
]

TRIALS += [
    Trial("study", "`make study ARGS=\"--epochs 0\"`", "alignment_unidpo.world.study:main",
          lambda t: ["--epochs", "0", "--out", f"{t}/study"]),
    Trial("study", "`--seeds 0 0 1`", "alignment_unidpo.world.study:main",
          lambda t: ["--seeds", "0", "0", "1", "--out", f"{t}/study"]),
    Trial("train", "world run with `--world_seed=-1`", "alignment_unidpo.world.experiment:main",
          lambda t: ["toy-world-dpo", "--world_seed=-1", "--dry_run"]),
    Trial("plot", "`make plot` on a corrupt trainer_state.json", "alignment_unidpo.plots:main",
          lambda t: [str(write(t / "run" / "trainer_state.json", '{"log_history": [\n').parent)]),
    Trial("merge", "`make merge` on a run that is not a LoRA run", "alignment_unidpo.training.merge:main",
          lambda t: [str(write(t / "run" / "config.json", "{}").parent)]),
]


def run_trial(trial: Trial) -> tuple[int, str, list[str]]:
    """Call the entry point in a fresh folder; (exit status, stdout, stderr lines)."""
    module, function = trial.entry.split(":")
    main = getattr(importlib.import_module(module), function)
    launched = []
    saved_env = {k: os.environ.get(k) for k in trial.env}
    os.environ.update(trial.env)
    out, err = io.StringIO(), io.StringIO()
    try:
        with tempfile.TemporaryDirectory(dir=SANDBOX) as tmp, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err), record_launches(launched):
            code = main(trial.argv(Path(tmp)))
            text_out, text_err = (normalise(s.getvalue(), Path(tmp)) for s in (out, err))
    finally:
        for key, value in saved_env.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    lines, keep = [], False
    for line in text_err.splitlines():  # error/warning lines, with the indented lines that continue them
        keep = line.startswith(("error:", "warning:")) or (keep and line.startswith("  "))
        if keep:
            lines.append(line)
    if launched:
        lines.append("checks pass; `accelerate launch` would start")
    return code, text_out, lines


@contextlib.contextmanager
def record_launches(launched: list):
    real = os.execvp
    os.execvp = lambda *args: launched.append(args)
    try:
        yield
    finally:
        os.execvp = real


def normalise(text: str, tmp: Path) -> str:
    return text.replace(str(tmp), "<tmp>").replace(str(SANDBOX), "<sandbox>").replace(str(REPO_ROOT), ".")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def table() -> str:
    rows = ["| stage | input | exit | what it prints |", "|---|---|---|---|"]
    for trial in TRIALS:
        code, out, lines = run_trial(trial)
        shown = trial.show(code, out, lines) if trial.show and code == 0 else "<br>".join(f"`{l}`" for l in lines)
        rows.append(f"| {trial.stage} | {cell(trial.what)} | {code} | {cell(shown)} |")
    return "\n".join(rows) + "\n"


HEADER = """# Trials: bad inputs and what they do

What each stage does with inputs a new user tried (issue 17), measured by running them.
Generated by `make trials` (`scripts/trials.py`), which calls each entry point's `main`
in-process, offline, with an empty Hugging Face cache and no W&B credentials; `<tmp>` is
the trial's own temporary folder. `tests/test_trials.py` fails when this file and a fresh
run differ. Inputs that need several processes (errors inside launched ranks) are shown by
the tests named in [errors.md](errors.md).

"""


def main(argv: list[str]) -> int:
    text = HEADER + table()
    if "--write" in argv:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(REPO_ROOT)} ({len(TRIALS)} trials)")
    elif "--check" in argv:
        if DOC.read_text() != text:
            sys.stdout.write(text)
            print(f"\n{DOC.relative_to(REPO_ROOT)} differs from the trials above: run `make trials`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
