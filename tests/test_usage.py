"""`make help` and the Makefile: whole descriptions, a truthful default, and paths with spaces."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from helpers import REPO_ROOT

from alignment_unidpo.resolve import DEFAULT_RECIPE, DEFAULT_WORLD_RECIPE
from alignment_unidpo.usage import first_sentence, help_text, leading_comment, make_targets


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> subprocess.CompletedProcess:
    """``make -s ARGS`` in the repository, installing nothing (``STAMP=``: no venv prerequisite)."""
    return subprocess.run(["make", "-s", *args, "STAMP="], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def command(*args: str) -> list[str]:
    """The argv ``make -n ARGS`` prints, from the module after ``-m`` on."""
    proc = make("-n", *args)
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout.replace("\\\n", " "))
    return argv[argv.index("-m") + 1:]


def section(text: str, title: str) -> list[str]:
    """The lines under the help's line starting with ``title``, up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@pytest.fixture(scope="module")
def text():
    return help_text()


def test_help_gives_each_accelerate_config_its_whole_first_sentence(text):
    lines = section(text, "accelerate configs")
    configs = sorted((REPO_ROOT / "accelerate_configs").glob("*.yaml"))
    entries = {}
    for line in lines:  # "  NAME  text" opens an entry, deeper-indented lines continue it
        name = line.split()[0] if not line.startswith("   ") else None
        if name:
            entries[name] = line.split(None, 1)[1]
        else:
            entries[list(entries)[-1]] += " " + line.strip()
        assert len(line) <= 88, line
    assert list(entries) == [p.stem for p in configs]
    for path in configs:
        sentence = first_sentence(leading_comment(path))
        assert entries[path.stem] == sentence and sentence.endswith("."), path.name
    # ddp's comment sentence runs over two lines of its file: once cut at "on a CPU"
    assert entries["ddp"].endswith("on a CPU machine the processes use the gloo backend.")


@needs_make
def test_help_says_what_a_bare_make_train_runs_and_what_recipes_default_is(text):
    assert DEFAULT_WORLD_RECIPE == "toy-world-uni-dpo"
    assert command("train")[:2] == ["alignment_unidpo.world.experiment", DEFAULT_WORLD_RECIPE]
    assert command("train", f"RECIPE={DEFAULT_RECIPE}")[:2] == ["alignment_unidpo.recipes", DEFAULT_RECIPE]
    flat = " ".join(text.split())
    assert (f"`make train` with no RECIPE does not run recipes/{DEFAULT_RECIPE}.yaml: it runs the world recipe "
            f"{DEFAULT_WORLD_RECIPE} in the preference world") in flat
    assert f"Resolves RECIPE (default: recipes/{DEFAULT_RECIPE}.yaml, a tiny Uni-DPO run on the toy pairs" in flat
    comment = leading_comment(REPO_ROOT / "recipes" / f"{DEFAULT_RECIPE}.yaml")
    assert f"a bare `make train` runs the preference world's {DEFAULT_WORLD_RECIPE} instead" in comment
    assert "`make train` runs when no RECIPE" not in comment  # the stale claim
    assert f"recipe {DEFAULT_WORLD_RECIPE}" in " ".join(" ".join(make_targets()[1:3]).split())


@needs_make
def test_help_lists_every_make_entry_with_its_continuation_lines(text):
    header = [line[4:].rstrip() for line in (REPO_ROOT / "Makefile").read_text().split("\n\n")[0].splitlines()
              if line.startswith("#   ")]
    assert make_targets() == header
    for line in header:
        assert f"  {line}\n" in text
    assert "  " + " " * 45 + "on every node (its own MACHINE_RANK); NUM_PROCESSES is the total" in text
    assert "(no CONFIG: on-policy pairs in the world; last line: JSON)" in text
    without_venv = make("help", "VENV=/nonexistent").stdout  # the Makefile's own fallback, no Python
    assert without_venv.splitlines()[:-1] == [f"  {line}" for line in header]


def test_no_help_line_ends_in_a_word_cut_at_its_hyphen(text):
    assert [line for line in text.splitlines() if re.search(r"\w-$", line)] == []


SPACED = {"RECIPE": "my recipes/x.yaml", "ACCELERATE": "my configs/acc.yaml", "CONFIG": "my configs/data.yaml",
          "RUN": "outputs/it's my run", "PREDICTIONS": "my preds/p.jsonl", "MODEL": "my models/it's mine",
          "REVISION": "it's v1"}


@needs_make
@pytest.mark.parametrize("target, values, expected", [
    ("train", ["RECIPE", "ACCELERATE"], ["my recipes/x.yaml", "--accelerate_config=my configs/acc.yaml"]),
    ("data", ["CONFIG"], ["my configs/data.yaml"]),
    ("merge", ["RUN"], ["outputs/it's my run"]),
    ("plot", ["RUN"], ["outputs/it's my run"]),
    ("eval", ["RUN", "PREDICTIONS"], ["outputs/it's my run", "--predictions=my preds/p.jsonl"]),
    ("eval", ["MODEL", "REVISION"], ["--model=my models/it's mine", "--revision=it's v1"]),
    ("sweep", ["RECIPE"], ["my recipes/x.yaml"]),
])
def test_make_passes_a_path_with_spaces_or_quotes_as_one_argument(target, values, expected):
    argv = command(target, *(f"{k}={SPACED[k]}" for k in values))
    assert [a for a in argv[1:] if a in expected] == expected, argv  # each one word, in order


@needs_make
def test_make_train_keeps_one_word_recipes_apart_from_world_recipes():
    def module(*args):
        return command("train", *args)[:2]

    assert module() == ["alignment_unidpo.world.experiment", DEFAULT_WORLD_RECIPE]
    assert module("RECIPE=toy-world-dpo") == ["alignment_unidpo.world.experiment", "toy-world-dpo"]
    assert module("RECIPE=llama3-8b-base-v0.2") == ["alignment_unidpo.recipes", "llama3-8b-base-v0.2"]
    # a path with spaces whose last word looks like a world recipe is still one recipe path
    assert module("RECIPE=my toy-world-dpo") == ["alignment_unidpo.recipes", "my toy-world-dpo"]


@pytest.mark.slow
@pytest.mark.parametrize("target, key, name", [
    ("plot", "RUN", "no run"),
    ("merge", "RUN", "no run"),
    ("train", "RECIPE", "my recipe.yaml"),
    ("data", "CONFIG", "my data.yaml"),
    ("eval", "PREDICTIONS", "my preds.jsonl"),
])
@needs_make
def test_a_missing_path_with_a_space_is_named_whole_in_the_error_line(tmp_path, target, key, name):
    missing = tmp_path / "with space" / name
    extra = {"train": ["DRY_RUN=1"], "data": ["DRY_RUN=1"], "eval": ["SUITE=math"]}.get(target, [])
    proc = subprocess.run(["make", "-s", target, f"{key}={missing}", *extra, "STAMP=", f"PY={sys.executable}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "HF_HUB_OFFLINE": "1"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 1 and str(missing) in errors[0], proc.stderr[-2000:]
