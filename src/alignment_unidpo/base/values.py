"""One rule for values typed on a command line or in YAML, shared by every stage.

A boolean key takes ``true``/``false`` and the usual spellings (``yes``/``no``,
``on``/``off``, ``1``/``0``, any case); anything else is an error that names the key.
``bool("no")`` is True in Python, which once let ``--trust_remote_code=no`` run remote
code: never call ``bool()`` on a value a user typed.
"""

from __future__ import annotations

from typing import Any

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


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
    raise ValueError(f"{key} must be true or false (or yes/no, on/off, 1/0), got {value!r}")
