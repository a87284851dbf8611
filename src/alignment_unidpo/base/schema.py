"""Typed configs whose fields say, each in its own metadata, what they are and what they take.

A field of a config dataclass (a data config section, the options of ``make eval``) is made
with :func:`option`: its default, a ``help`` string and a :class:`Rule`, the one place its
allowed values live. The checks (:func:`read_value`), the ``--help`` text (:func:`key_lines`)
and the dry runs (which print the resolved values) are all derived from there, in the style
of TRL's ``DPOConfig`` (``field(default=..., metadata={"help": ...})``).

A :class:`Rule` reads a value as typed (a YAML scalar, or a string from a command line) and
accepts it or not; its ``allowed`` text is what the error line and ``--help`` say. A
:class:`Choice` is a rule whose values are a fixed tuple or a live registry (read when
checked, so a prompt source or a scorer registered later is allowed). A value renamed in a
later version keeps working under its old name: ``Choice(..., renamed={"old": "new"})``
reads ``old`` as ``new``, and :meth:`Choice.stored_name` gives the name a value had first
(what a cache key built before the rename hashed). A key renamed keeps its old name too:
``option(..., old_names=("old_key",))`` (:func:`read_fields` reads it as the new key).

A field whose default is ``None`` takes ``null`` as "unset", never checked against its rule,
as the recipes' keys do (:func:`alignment_unidpo.configs.check_values`).
"""

from __future__ import annotations

import dataclasses
import difflib
import textwrap
from typing import Any, Callable, Iterable, Mapping

from .values import BOOL_WORDS_TEXT, finite_number, is_integer, parse_bool

MISSING = dataclasses.MISSING


class Rule:
    """The values one key takes: ``parse`` brings a typed value to the kept one (raising
    ValueError when it cannot), ``check`` accepts the result or not, ``allowed`` says what is
    accepted (error lines and ``--help`` print it)."""

    def __init__(self, allowed: str, check: Callable[[Any], bool] = lambda v: True,
                 parse: Callable[[Any], Any] | None = None):
        self.allowed, self.check, self.parse = allowed, check, parse

    def describe(self) -> str:
        return self.allowed

    def read(self, value: Any) -> Any:
        """``value`` as kept; ValueError when the rule refuses it (the caller writes the line)."""
        if self.parse is not None:
            value = self.parse(value)
        if not self.check(value):
            raise ValueError(value)
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


class Choice(Rule):
    """One of a set of values: a tuple, or a registry (any iterable, e.g. a dict of
    registered names) read each time a value is checked. ``renamed`` maps a value's old name
    to its new one: the old name is read as the new."""

    def __init__(self, values: Iterable[Any] | Callable[[], Iterable[Any]], renamed: Mapping[Any, Any] | None = None,
                 note: str = ""):
        self.source, self.renamed, self.note = values, dict(renamed or {}), note
        super().__init__("", self.accepts)

    def values(self) -> tuple[Any, ...]:
        return tuple(self.source() if callable(self.source) else self.source)

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.values()
        except TypeError:  # an unhashable value against a registry dict
            return False

    def describe(self) -> str:
        names = ", ".join("null" if v is None else str(v) for v in self.values())
        return f"one of {names}" + (f" {self.note}" if self.note else "")

    def read(self, value: Any) -> Any:
        try:
            value = self.renamed.get(value, value)
        except TypeError:  # unhashable: refused below
            pass
        return super().read(value)

    def stored_name(self, value: Any) -> Any:
        """The first name of a renamed value (what a hash computed before the rename saw)."""
        first = {new: old for old, new in self.renamed.items()}
        try:
            return first.get(value, value)
        except TypeError:
            return value


# --- rules used by more than one config -----------------------------------------------------
def read_string_as(kind: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A parse step: a string is read as ``kind`` where it can be (else left for the check to refuse)."""
    def parse(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return kind(v)
            except ValueError:
                return v
        return v
    return parse


def number(allowed: str, check: Callable[[float], bool] = lambda v: True) -> Rule:
    """A finite int or float (a string from a command line is read as a float) for which ``check`` holds."""
    return Rule(allowed, lambda v: finite_number(v) and check(v), read_string_as(float))


def integer(allowed: str, check: Callable[[int], bool] = lambda v: True) -> Rule:
    """An int (a string from a command line is read as one) for which ``check`` holds."""
    return Rule(allowed, lambda v: is_integer(v) and check(v), read_string_as(int))


def _parse_bool(value: Any) -> bool:
    return parse_bool(value, "value")


BOOLEAN = Rule(BOOL_WORDS_TEXT, lambda v: isinstance(v, bool), _parse_bool)
TEXT = Rule("a string", lambda v: isinstance(v, str))
NON_EMPTY_TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and v != "")
MAPPING = Rule("a mapping of key: value", lambda v: isinstance(v, dict))


def option(default: Any = MISSING, *, help: str, rule: Rule | None = None, default_factory: Any = MISSING,
           **metadata: Any) -> Any:
    """A dataclass field with its ``help`` and its :class:`Rule` in ``metadata`` (and any other
    metadata given, e.g. ``old_names``, or the data config's ``hashed``)."""
    meta = {"help": help, "rule": rule, **metadata}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def rule_of(f: dataclasses.Field) -> Rule | None:
    return f.metadata.get("rule")


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh one from its factory)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def read_value(label: str, value: Any, f: dataclasses.Field) -> Any:
    """``value`` of field ``f`` as kept, or ValueError ``<label> must be <allowed>, got <value>``.

    ``null`` for a field whose default is None means unset and is kept as it is. A parse
    function may raise an error of the package's own (an InputError), whose message is kept.
    """
    rule = rule_of(f)
    if rule is None or (value is None and f.default is None):
        return value
    try:
        return rule.read(value)
    except ValueError as err:
        if type(err) is not ValueError:  # the package's own error: its message says it all
            raise
        raise ValueError(f"{label} must be {rule.describe()}, got {value!r}") from None


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key closest to ``key`` (difflib's ratio >= 0.6), or None."""
    found = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key(key: str, known: Iterable[str]) -> str:
    """``unknown key 'bta' (did you mean 'beta'?)``, or the known keys when none is close."""
    known = list(known)
    hint = closest(key, known)
    return f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else f" (known: {', '.join(known)})")


def old_name_of(cls: type) -> dict[str, str]:
    """``{old key: key}`` of the fields of ``cls`` renamed (``option(..., old_names=...)``)."""
    return {old: f.name for f in dataclasses.fields(cls) for old in f.metadata.get("old_names", ())}


def read_fields(cls: type, given: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every field of ``cls``: the value ``given`` (read by its rule) or the default.

    A key not a field (nor a field's old name) is a ValueError naming the closest field;
    a bad value one naming ``<prefix><key>``, the value and the allowed values.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    renamed = old_name_of(cls)
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in given.items():
        name = renamed.get(key, key)
        if name not in fields:
            raise ValueError(unknown_key(f"{prefix}{key}", [f"{prefix}{k}" for k in fields]))
        if name in values:
            old = key if key != name else given_as[name]
            raise ValueError(f"{prefix}{old} is the old name of {prefix}{name}: give only one of them")
        values[name], given_as[name] = value, key
    out = {}
    for name, f in fields.items():
        out[name] = read_value(f"{prefix}{name}", values[name], f) if name in values else default_of(f)
    return out


def shown(value: Any) -> str:
    """A default as ``--help`` prints it (YAML's spellings: null, true, false)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def key_lines(cls: type, prefix: str = "", indent: str = "  ", width: int = 88,
              rules: Mapping[str, Rule] | None = None) -> list[str]:
    """``<prefix><key> [default X]`` for each field of ``cls`` made by :func:`option`, then
    its help and its allowed values (from its rule; ``rules``: for a key whose values live
    in a registry above the config, e.g. ``make eval``'s suites), wrapped under it."""
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init or "help" not in f.metadata:  # e.g. a section of a config, listed on its own
            continue
        default = default_of(f)
        lines.append(f"{indent}{prefix}{f.name} [default {'required' if default is MISSING else shown(default)}]")
        text = f.metadata.get("help", "")
        rule = (rules or {}).get(f.name) or rule_of(f)
        if rule is not None:
            allowed = rule.describe()
            text += f" Allowed: {allowed}" + ("; null: unset." if f.default is None and "null" not in allowed else ".")
        if text:
            lines += textwrap.wrap(text.strip(), width, initial_indent=indent + "    ",
                                   subsequent_indent=indent + "    ", break_on_hyphens=False)
    return lines
