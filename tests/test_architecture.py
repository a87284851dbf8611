"""One direction through the house: the import contracts of ``.importlinter`` hold (layers,
datagen and evaluation independent, no cycles), a deliberate bad import breaks them, no
module imports a private name of another, and the world reaches datagen and evaluation only
through their registries.

lint-imports runs in a subprocess on this checkout's ``src`` (never on another editable
install); the bad imports are made in a copy of the package in a temporary folder.
"""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT

pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")

CONFIG = REPO_ROOT / ".importlinter"
PACKAGE = REPO_ROOT / "src" / "alignment_unidpo"
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(src: Path, *contracts: str) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contracts (those named, or all) on the package in ``src``."""
    args = ["--config", str(CONFIG), "--no-cache", "--no-logo"] + [a for c in contracts for a in ("--contract", c)]
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", LINT, *args], cwd=src.parent, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_import_contracts_are_kept():
    proc = lint_imports(PACKAGE.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


# (module, the import added at its end, the contract it breaks)
BAD_IMPORTS = [
    ("datagen/score.py", "from ..world import task", "layers"),  # a stage reaching up into the world
    ("base/values.py", "from ..training import losses", "layers"),  # the base importing a stage
    ("configs.py", "from .training import tokenization", "layers"),  # configs below the training package
    ("evaluation/report.py", "from ..datagen import pair", "stages"),  # make eval importing make data
    ("training/toy.py", "from . import models", "cycles"),  # models imports toy: a cycle in training/
]


@pytest.mark.parametrize("module, line, contract", BAD_IMPORTS)
def test_a_bad_import_breaks_a_contract(tmp_path, module, line, contract):
    copy = tmp_path / "src" / "alignment_unidpo"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert lint_imports(copy.parent, contract).returncode == 0  # the copy as it is keeps the contract
    with open(copy / module, "a") as handle:
        handle.write(f"\n{line}  # deliberately against the contract\n")
    proc = lint_imports(copy.parent, contract)
    assert proc.returncode == 1 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr


def package_module(importer: Path, node: ast.ImportFrom, name: str | None = None) -> Path | None:
    """The file or folder of the package module ``from <node.module> import <name>`` names, if any."""
    if node.level:
        base = importer.parent
        for _ in range(node.level - 1):
            base = base.parent
    elif node.module and node.module.split(".")[0] == "alignment_unidpo":
        base = PACKAGE.parent
    else:
        return None
    parts = (node.module.split(".") if node.module else []) + ([name] if name else [])
    target = base.joinpath(*parts)
    return next((p for p in (target.with_suffix(".py"), target) if p.exists()), None)


def private_imports(path: Path, text: str | None = None) -> list[str]:
    """Private names (``_x``) of other package modules that the module at ``path`` (its text, or
    ``text``) imports or reads off an imported module."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    found, module_aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and package_module(path, node) is not None:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: imports {alias.name}")
                if package_module(path, node, alias.name) is not None:  # a module, bound to a name
                    module_aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: reads {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_a_private_name_of_another():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in private_imports(path)]
    assert found == []


def test_the_private_name_scan_sees_both_forms():
    text = "from ..training.ref_cache import _checksum\nfrom ..base import files\nfiles._x\n"
    found = private_imports(PACKAGE / "evaluation" / "probe.py", text)  # parsed as if it were there
    assert [hit.split(": ", 1)[1] for hit in found] == ["imports _checksum", "reads files._x"]


# --- the world plugs in; datagen and evaluation alone do not know it --------------------------
WITHOUT_THE_WORLD = """
import sys
from alignment_unidpo.datagen.pipeline import main as data
from alignment_unidpo.evaluation.run_eval import main as evaluate
codes = [data(["--dry_run"]), evaluate(["--suite=world"])]
assert not any(name.startswith("alignment_unidpo.world") for name in sys.modules), "the world was imported"
print(codes)
"""


def test_without_the_world_its_names_are_one_clear_error_line():
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", WITHOUT_THE_WORLD], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "[2, 2]", proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {REPO_ROOT / 'data_configs' / 'toy-world-on-policy.yaml'}: prompts.source must be one of "
        "jsonl, got 'world'",
        "error: unknown suite 'world'; choose one of math, alpacaeval, arenahard, sedareval, ifeval, vlm (SUITE=...)"]


def test_importing_the_world_registers_its_plugins_after_the_stages_own():
    from alignment_unidpo import world  # noqa: F401
    from alignment_unidpo.datagen.scorers import SCORERS
    from alignment_unidpo.datagen.sources import PROMPT_SOURCES
    from alignment_unidpo.evaluation.suites import SUITES

    assert list(PROMPT_SOURCES) == ["jsonl", "world"] and "world:sft" in PROMPT_SOURCES["world"].models
    assert list(SCORERS) == ["reward_model", "external", "prm", "none", "openai_judge", "world_judge"]
    assert SCORERS["world_judge"].needs_source == "world"
    assert list(SUITES) == ["math", "alpacaeval", "arenahard", "sedareval", "ifeval", "vlm", "world"]
