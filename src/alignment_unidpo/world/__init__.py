"""The preference world: a small task with known truth, to test the methods end to end.

* :mod:`.task`: the task, its true quality function, the noisy judge, and seeded data.
* :mod:`.sft`: the supervised fine-tuning that gives every preference run its start and reference.
* :mod:`.experiment`: one preference run in the world (``make train RECIPE=toy-world-...``).
* :mod:`.evaluate`: held-out metrics of a policy in the world.
* :mod:`.demo`: the paper's comparison and ablations in miniature (``make demo``).

Kept light on purpose: nothing is imported here.
"""
