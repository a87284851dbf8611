"""YAML as every stage reads it, and ``--key=value`` overrides from a command line.

Recipes, data configs and overrides all go through :class:`YamlLoader`: YAML 1.2 scalars
(only ``true``/``false`` are booleans, ``1e-6`` is a float) and no key written twice in one
mapping. :func:`read_yaml` names the file and line of a syntax error; an override's value is
parsed as YAML too (:func:`parse_overrides`), so ``--beta=3`` is a number and
``--lora_target_modules=[q_proj]`` a list.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, RecipeError


class YamlLoader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans (``eval_strategy: no`` stays the
    string "no") and ``1e-6`` is a float, not a string as in YAML 1.1. A key written twice in
    one mapping is an error (PyYAML would silently keep the last value)."""

    def construct_mapping(self, node, deep=False):
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key = self.construct_object(key_node)
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first on line {first_line[key]})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def yaml_load(text: str) -> Any:
    """``text`` parsed as YAML by :class:`YamlLoader`."""
    return yaml.load(text, Loader=YamlLoader)


def read_yaml(path: Path, error: type[InputError] = RecipeError) -> Any:
    """The YAML file at ``path``, parsed; a syntax error (or a key written twice) raises
    ``error`` naming the file and the line."""
    try:
        return yaml_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        raise error(f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None


def split_overrides(args: list[str]) -> list[tuple[str, str]]:
    """``['--beta=3', '--output_dir', 'x', '--use_peft']`` -> ``[('beta', '3'), ('output_dir', 'x'), ('use_peft', 'true')]``."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise RecipeError(f"expected an override like --key=value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = "true"  # a bare flag
        pairs.append((key.replace("-", "_"), value))
        i += 1
    return pairs


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Command-line overrides as a mapping, each value parsed as YAML."""
    return {key: (yaml_load(value) if value != "" else "") for key, value in split_overrides(args)}
