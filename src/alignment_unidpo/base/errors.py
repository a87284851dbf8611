"""The package's error classes, in one place below every stage.

Every one is a ``ValueError``, which :func:`alignment_unidpo.base.cli.entry_point` reports as
one ``error: ...`` line. An :class:`InputError` is a mistake in something the user wrote (a
recipe, a data config, a data file, an option): its message names what is wrong and where,
so it is printed as it is; any other error gets a pointer to ``--debug`` and its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """An input the user can fix; the message names the file, key, row or option."""


class RecipeError(InputError):
    """A recipe, base config or override that cannot be resolved."""


class DataValidationError(InputError):
    """Bad data or a bad option of a data stage; the message names the source, row and field of each problem."""


class DataGenError(DataValidationError):
    """A data-generation config or input that cannot be used; the message names file and line."""


class DownloadError(InputError):
    """A file that could not be downloaded, or whose bytes are not the pinned ones; the message
    names the file, where it comes from and the command to run again."""


class ChatTemplateError(ValueError):
    """A chat template that cannot split a conversation into prompt and answer (reported with
    the ``--debug`` pointer: the fix is in the recipe's ``chat_template``, not in a file we read)."""
