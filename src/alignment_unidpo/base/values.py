"""The rules for values typed on a command line or in YAML, shared by every stage.

A boolean key takes ``true``/``false`` and the usual spellings (``yes``/``no``,
``on``/``off``, ``1``/``0``, any case); anything else is an error that names the key.
``bool("no")`` is True in Python, which once let ``--trust_remote_code=no`` run remote
code: never call ``bool()`` on a value a user typed.

The recipe checks its numbers against a table of rules, ``(keys, predicate, allowed range as
the error message writes it)`` (:data:`alignment_unidpo.configs.VALUE_RULES`), with the
predicates and the lookup below; the data config and the options of ``make eval`` keep each
key's rule in its field's metadata (:mod:`alignment_unidpo.base.schema`).
"""

from __future__ import annotations

import math
from typing import Any

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
BOOL_WORDS_TEXT = "true or false (or yes/no, on/off, 1/0)"  # what a boolean key takes, as errors and --help say


def parse_bool(value: Any, key: str) -> bool:
    """``value`` as a bool, or ValueError naming ``key`` and the accepted spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"{key} must be {BOOL_WORDS_TEXT}, got {value!r}")


def trusts_remote_code(section: dict[str, Any], where: str) -> bool:
    """``<where>.trust_remote_code`` of a config section as the model loaders take it: a bool,
    default false. A config's booleans are parsed when it loads; parsing again costs nothing
    and keeps a hand-made mapping holding ``"no"`` from ever meaning True."""
    return parse_bool(section.get("trust_remote_code", False), f"{where}.trust_remote_code")


def finite_number(v: Any) -> bool:
    """An int or float (not a bool, not a numeric string), neither inf nor nan."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_integer(v: Any) -> bool:
    """An int, not a bool (``8.0`` and ``"8"`` are not)."""
    return isinstance(v, int) and not isinstance(v, bool)


def rules_by_key(rules: tuple[tuple[tuple[str, ...], Any, str], ...]) -> dict[str, tuple[Any, str]]:
    """A rule table as ``{key: (predicate, allowed)}``."""
    return {key: (check, allowed) for keys, check, allowed in rules for key in keys}


def first_bad_value(values: dict[str, Any], rule_of: dict[str, tuple[Any, str]],
                    nullable: set[str] = frozenset()) -> tuple[str, Any, str] | None:
    """``(key, value, allowed)`` of the first value its rule in ``rule_of`` refuses, or None.

    Keys without a rule pass; so does ``null`` for the keys in ``nullable`` (null means "unset").
    """
    for key, value in values.items():
        if key not in rule_of or (value is None and key in nullable):
            continue
        check, allowed = rule_of[key]
        if not check(value):
            return key, value, allowed
    return None
