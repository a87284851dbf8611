"""The preference world: a small task with known truth, to test the methods end to end.

* :mod:`.task`: the task, its true quality function, the noisy judge, and seeded data.
* :mod:`.sft`: the supervised fine-tuning that gives every preference run its start and reference.
* :mod:`.folders`: where a world and its SFT model are cached, made once per seed and settings.
* :mod:`.evaluate`: held-out metrics of a policy in the world.
* :mod:`.experiment`: one preference run in the world (``make train RECIPE=toy-world-...``).
* :mod:`.demo`: the paper's comparison and ablations in miniature (``make demo``).
* :mod:`.study`: the methods across the judge's noise (``make study``).
* :mod:`.plugins`: the world's prompt source, SFT model and judge for ``make data`` and its
  suite for ``make eval``.

Importing the world registers those plugins (the one import made here): whatever can run
the world imports this package.
"""

from . import plugins  # noqa: F401  (registers the world's prompt source, model, judge and evaluation suite)
