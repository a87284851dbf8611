"""``make eval``: from a trained model (or given outputs) to a table beside the paper's.

``python -m alignment_unidpo.eval_cli [RUN] --suite=math|alpacaeval|arenahard|ifeval|vlm|world [--key=value ...]``
(:mod:`alignment_unidpo.eval_cli`: this module's :func:`main` with the preference world's
suite registered)

The model is a run folder (RUN), or ``--model=`` (``make eval MODEL=...``): a hub id at
``--revision`` (default main) or a local folder (:mod:`.models`); results record a hub
model's id, revision and the commit loaded, and ``--recipe`` names the paper rows to put
beside them.

* ``--suite=math`` with a RUN: greedy answers to the Tab. C.2 prompt for each benchmark of
  Table 2 (:mod:`.math_suite`); without a RUN, ``--predictions=FILE`` grades given outputs.
* ``--suite=alpacaeval`` / ``arenahard``: answers in the judges' formats and the judge
  commands (:mod:`.textual_suite`); judging itself needs API keys.
* ``--suite=ifeval``: answers to IFEval's prompts scored offline by lm-eval's own checkers,
  prompt- and instruction-level, strict and loose (:mod:`.ifeval_suite`).
* ``--suite=vlm``: a Qwen2-VL model's VLMEvalKit config and command, and VLMEvalKit's results
  read back beside Table D.4 (:mod:`.vlm_suite`).
* a suite registered by a package above evaluation (:mod:`.suites`): ``--suite=world``, the
  default for a preference-world run, its held-out metrics.

Every input is checked before a model loads or a file is written: RUN or MODEL (a hub id
offline: in the local cache), SUITE, each option's value (and whether this kind of
evaluation reads it at all), the input files, and that the output folder takes a file. A
bad one is one ``error: ...`` line, exit status 2.

Outputs go to ``RUN/eval/<suite>/`` (a hub MODEL: ``outputs/eval/<org>--<name>[@<revision>]/<suite>/``;
grade-only: ``--out`` or ``<predictions dir>/<stem>-eval/``):
``results.jsonl`` (one line per item, :mod:`.item_log`), ``results.md``, ``summary.json``.
Per-item lines are appended and flushed as items finish, so a killed run resumes where it
stopped; at the end the log is rewritten to exactly the current items, in input order (with
``--benchmarks``, the rows of the other benchmarks are left as they were). The last line
printed is one JSON object.

``--help`` lists every option with its default, help and allowed values (read from the
fields of :class:`~.options.Options`) and the suites with the options each reads;
``--dry_run`` checks RUN, SUITE and the options as a run does, then prints the resolved
options and what would run as JSON, reading no input file, loading no model and writing
nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from ..base.cli import entry_point
from ..base.errors import DataValidationError
from ..base.schema import Choice, key_lines
from ..base.values import parse_bool
from ..base.yamlio import split_overrides
from ..checks import local_model_problem
from . import models
from ..generation.backends import backend_problem
from .options import Options, decoding_of, parse_value
from .suites import GRADE_ONLY, SUITES, suite_of


def default_suite(folder: Path) -> str:
    """The first registered suite that accepts ``folder`` as its own (e.g. a world run), or ""."""
    return next((name for name, suite in SUITES.items() if suite.run_problem and suite.run_problem(folder) is None), "")


def check_run(run: str | None, opts: Options) -> None:
    """RUN and SUITE: fill in the suite a registered suite claims for RUN, or one error line
    naming what is wrong (a RUN that is not a folder first of all)."""
    folder = Path(run) if run is not None else None
    if folder is not None and not folder.is_dir():
        raise DataValidationError(f"no such folder {run} (RUN=... names a trained model's folder)")
    if not opts.suite and folder is not None:
        opts.suite = default_suite(folder)
    if not opts.suite:
        problems = [p for s in SUITES.values() if folder is not None and s.run_problem and (p := s.run_problem(folder))]
        what = f"{run} {'; '.join(problems)}" if problems else f"no suite given{f' for {run}' if run else ''}"
        raise DataValidationError(f"{what}: choose a suite, SUITE={'|'.join(SUITES)}")
    if opts.suite not in SUITES:
        raise DataValidationError(f"unknown suite {opts.suite!r}; choose one of {', '.join(SUITES)} (SUITE=...)")
    suite = suite_of(opts)
    if folder is None and suite.takes_run:
        raise DataValidationError("name a model: RUN=<run folder> or MODEL=<hub id or folder>, or give "
                                  "PREDICTIONS=... with SUITE=math")
    if folder is not None and not suite.takes_run:  # its eval/math/ holds the model's own log
        raise DataValidationError(f"PREDICTIONS grades given outputs, no model: leave RUN={run} out "
                                  "(results go beside the predictions, or to --out=...)")
    problem = suite.run_problem(folder) if suite.run_problem else None
    if problem:
        raise DataValidationError(f"{run} {problem}; SUITE={opts.suite} needs one")
    if suite.needs_model and not any((folder / name).is_file() for name in models.MODEL_FILES):
        raise DataValidationError(f"{run} is not a model folder (no {' or '.join(models.MODEL_FILES)})")


def check_model(run: str | None, opts: Options, given: list[str]) -> str | None:
    """MODEL and --revision, the folder evaluated returned: a local folder becomes RUN (and is
    checked as RUN is); a hub id is checked here with SUITE (offline: it must be in the local
    cache, and its snapshot folder there is returned; online: None, :func:`main` downloads it
    just before it loads). One error line for the first problem."""
    name = opts.model
    if not name:
        if opts.revision:
            raise DataValidationError(f"--revision={opts.revision} picks a hub revision: give it with MODEL=<hub id>")
        return run
    if run is not None:
        raise DataValidationError(f"RUN={run} and MODEL={name}: evaluate one (RUN= a run folder, MODEL= a hub id or "
                                  "a model folder)")
    if models.is_local(name):
        problem = local_model_problem(models.KEY, name)
        if problem:
            raise DataValidationError(problem)
        if opts.revision:
            raise DataValidationError(f"--revision={opts.revision} picks a hub revision; MODEL={name} is a local "
                                      "folder")
        opts.model = ""
        given.remove("model")
        return name  # evaluated as RUN=<name> is
    models.check_hub_id(name)
    takes_model = "|".join(n for n, s in SUITES.items() if s.needs_model)
    if not opts.suite:
        raise DataValidationError(f"no suite given for MODEL={name}: choose a suite, SUITE={takes_model}")
    if opts.suite not in SUITES:
        raise DataValidationError(f"unknown suite {opts.suite!r}; choose one of {', '.join(SUITES)} (SUITE=...)")
    if opts.predictions:
        raise DataValidationError(f"PREDICTIONS grades given outputs, no model: leave MODEL={name} out")
    if not SUITES[opts.suite].needs_model:
        raise DataValidationError(f"SUITE={opts.suite} evaluates no hub model: MODEL={name} takes SUITE={takes_model}")
    opts.revision = opts.revision or models.DEFAULT_REVISION
    snapshot = models.offline_snapshot(name, opts.revision)
    return str(snapshot) if snapshot else None


def check_options(given: list[str], opts: Options) -> None:
    """An option this kind of evaluation would not read is an error naming those it reads."""
    suite = suite_of(opts)
    allowed = suite.options_read()
    for key in given:
        if key not in allowed:
            raise DataValidationError(f"--{key} does not apply to {suite.title or f'SUITE={opts.suite}'}; it takes "
                                      f"{', '.join('--' + k for k in Options.__dataclass_fields__ if k in allowed)}")


HELP_FLAGS = ("--help", "-h", "--help=true")
FLAGS = ("dry_run",)  # command-line flags of make eval itself, not options of a suite


def parse_args(argv: list[str]) -> tuple[str | None, Options]:
    """RUN (the folder evaluated) and the options, every value checked: one error line for the first bad one."""
    run, opts, _, _ = parse_command(argv)
    return run, opts


def parse_command(argv: list[str]) -> tuple[str | None, Options, list[str], dict[str, bool]]:
    """RUN (the folder evaluated: RUN, MODEL's folder, or a hub MODEL's snapshot in the cache;
    None for one still to download, or no model), the options, the options given and the flags
    (``--dry_run``), every value checked: one error line for the first bad one."""
    argv = list(argv)
    run = argv.pop(0) if argv and not argv[0].startswith("--") else None
    opts, given, flags = Options(), [], {flag: False for flag in FLAGS}
    for key, value in split_overrides(argv):
        if key in FLAGS:
            try:
                flags[key] = parse_bool(value, f"--{key}")
            except ValueError as err:
                raise DataValidationError(str(err)) from None
            continue
        if key not in Options.__dataclass_fields__:
            raise DataValidationError(f"unknown option --{key}; known: "
                                      f"{', '.join('--' + k for k in Options.__dataclass_fields__)}")
        setattr(opts, key, parse_value(key, value))
        given.append(key)
    run = check_model(run, opts, given)
    if not opts.model:  # a hub id's SUITE is checked with it
        check_run(run, opts)
    check_options(given, opts)
    return run, opts, given, flags


def out_dir(run: str | None, opts: Options) -> Path:
    if opts.out:
        return Path(opts.out)
    if opts.model:
        return models.default_out(opts.model, opts.revision, opts.suite)
    if run is not None:
        return Path(run) / "eval" / opts.suite
    pred = Path(opts.predictions)
    return pred.parent / f"{pred.stem}-eval"


def writable(out: Path) -> Path:
    """``out``, created if need be, once a file could be created and removed in it (else one error line)."""
    if out.exists() and not out.is_dir():
        raise DataValidationError(f"{out} is a file, not a folder (choose another: --out=...)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out, prefix=".write-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise DataValidationError(f"cannot write in {out}: {err.strerror or err} (choose another: --out=...)") from None
    return out


def plan(run: str | None, opts: Options, given: list[str]) -> dict[str, Any]:
    """What a run would do (the dry run's JSON): the evaluation, the options it reads as
    resolved, the decoding and the output folder. Reads no input file and writes nothing."""
    suite = suite_of(opts)
    read = suite.options_read()
    out: dict[str, Any] = {"run": run, "suite": opts.suite, "evaluation": suite.title or f"SUITE={opts.suite}",
                           "options": {k: v for k, v in dataclasses.asdict(opts).items() if k in read},
                           "given": given, "out": str(out_dir(run, opts))}
    if opts.model:  # a hub id: offline its snapshot in the cache (checked), online downloaded before it loads
        out["model"] = {"id": opts.model, "revision": opts.revision,
                        "commit": models.commit_of(run, opts.model) if run else None,
                        "loads from": run or "the hub: downloaded when the evaluation starts"}
    if "max_new_tokens" in read:
        out["decoding"] = decoding_of(opts).as_dict()
    out["not_read"] = [k for k in Options.__dataclass_fields__ if k not in read]
    return out


USAGE = """usage: python -m alignment_unidpo.eval_cli [RUN] [--suite=SUITE] [--dry_run] [--key=value ...]
       make eval RUN=... [SUITE=...] [PREDICTIONS=...] [DRY_RUN=1] [ARGS="--key=value ..."]
       make eval MODEL=<hub id or folder> [REVISION=...] SUITE=... [ARGS="--recipe=NAME ..."]

Evaluates a trained model (RUN, its folder; or MODEL, a hub id at a revision or a folder)
or, with SUITE=math and PREDICTIONS=FILE and no model, grades given outputs; results go
beside the paper's numbers. Every input is checked before a model loads or a file is
written; a bad one is one `error:` line. --dry_run checks RUN or MODEL, SUITE and the
options, then prints the resolved options and what would run as JSON (reading no input
file, loading nothing); --help prints this."""


def help_text() -> str:
    """``make eval ARGS=--help``: usage, every option (default, help, allowed values, from the
    fields of :class:`Options`) and the suites with the options each reads."""
    head, *paragraphs = USAGE.split("\n\n")
    out = [head]
    for paragraph in paragraphs:
        out += ["", textwrap.fill(paragraph, 88, break_long_words=False, break_on_hyphens=False)]
    out += ["", "options (--key=value; a suite refuses one it does not read):"]
    out += key_lines(Options, prefix="--", rules={"suite": Choice(SUITES)})
    out += ["", "suites (SUITE=NAME) and the options each reads:"]
    order = list(Options.__dataclass_fields__)
    kinds = [(f"SUITE={name}", suite) for name, suite in SUITES.items()] + [("SUITE=math PREDICTIONS=...", GRADE_ONLY)]
    for name, suite in kinds:
        options = " ".join(f"--{k}" for k in order if k in suite.options_read())
        out += textwrap.wrap(f"{name}: {options}", 88, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(out)


@entry_point
def main(argv: list[str]) -> int:
    if any(arg in HELP_FLAGS for arg in argv):
        print(help_text())
        return 0
    run, opts, given, flags = parse_command(argv)
    if flags["dry_run"]:
        print(json.dumps(plan(run, opts, given), indent=2))
        return 0
    suite = suite_of(opts)
    if "backend" in suite.options_read() and (run or opts.model) and not opts.predictions:
        problem = backend_problem(opts.backend, str(run or opts.model))
        if problem:
            raise DataValidationError(problem)
    inputs = suite.read_inputs(run, opts)  # every input checked before a model loads or a file is written
    out = writable(out_dir(run, opts))
    if opts.model:  # a hub id: downloaded now when online; its output folder kept to the commit loaded
        run = str(run or models.download(opts.model, opts.revision))
        models.claim_out(out, models.identity(run, opts.model, opts.revision))
    result = suite.evaluate(run, opts, out, inputs)
    print(f"results: {out / 'results.md'}", file=sys.stderr)
    print(json.dumps(result), flush=True)
    return 0
