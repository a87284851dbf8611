"""Output folders and checkpoints: no run lost or silently overwritten.

* :func:`check_output_dir` refuses an ``output_dir`` that already holds a trained model or
  checkpoints, unless the run resumes it (``resume_from_checkpoint``) or replaces it
  (``overwrite_output_dir``); it runs in the launcher and again in every training process.
* :func:`prepare_output_dir` (main process only) removes stale ``tmp-checkpoint-*`` folders
  of a killed run and, with ``overwrite_output_dir``, the previous run's checkpoints and
  final files, so that nothing stale survives beside the new run.
* :func:`resolve_resume` turns ``resume_from_checkpoint`` (true or a path) into the latest
  *complete* checkpoint; a partial one (a kill before this module wrote checkpoints
  atomically, or a copy cut short) is skipped with a warning, never read.
* :class:`CheckpointingMixin`, mixed into the trainer, owns what a checkpoint does to the
  Trainer's own state: its ``_save_checkpoint`` writes into ``tmp-checkpoint-N``, renamed
  to ``checkpoint-N`` only once complete, and its ``train`` resumes from the latest
  complete checkpoint.
* The running sum of the training loss is kept in each checkpoint (:data:`LOSS_STATE_NAME`)
  so that ``train_loss`` after a resume covers the whole run, and so is the logging window
  open at the checkpoint: its loss sum, the step it opened after and its per-pair metrics
  (:data:`WINDOW_METRICS_NAME`). A resumed run continues that window, so its first log
  equals the uninterrupted run's (the Trainer alone would log the mean of the resumed
  steps only, and the per-pair metrics of those steps only).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..base.errors import RecipeError
from ..base.files import write_text_atomic
from ..base.jsonio import read_json_file

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TMP_PREFIX = "tmp-"
LOSS_STATE_NAME = "unidpo_loss_state.json"
WINDOW_METRICS_NAME = "unidpo_window_metrics.safetensors"  # per-pair metrics of the open logging window
# Files whose presence means the folder holds a finished (or saved) model.
TRAINED_MARKERS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "adapter_model.safetensors", "adapter_model.bin", "config.json", "train_results.json")
# What a run writes into output_dir itself; removed (with checkpoint-*) by overwrite_output_dir.
RUN_FILE_PATTERNS = ("model*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
                     "adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "config.json",
                     "generation_config.json", "training_args.bin", "trainer_state.json", "train_results.json",
                     "eval_results.json", "all_results.json", "pair_weights.json", "world_metrics.json",
                     "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                     "README.md", "preprocessor_config.json")
# folders a run writes beside its files: a LoRA run's saved toy/local base, and `make merge`'s output
BASE_MODEL_DIR, MERGED_DIR = "base_model", "merged"
RUN_DIRS = (BASE_MODEL_DIR, MERGED_DIR)
TRUE_STRINGS, FALSE_STRINGS = ("true", "yes", "1"), ("false", "no", "0", "none", "null", "")


def parse_resume(value: Any) -> bool | str | None:
    """``resume_from_checkpoint`` as None (no resume), True (latest complete) or a path.

    A recipe's or the command line's ``true`` reaches TrainingArguments' str field as "True".
    """
    if value is None or value is False:
        return None
    if value is True:
        return True
    text = str(value).strip()
    if text.lower() in TRUE_STRINGS:
        return True
    if text.lower() in FALSE_STRINGS:
        return None
    return text


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of ``output_dir``, highest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)), reverse=True)


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete checkpoint to resume from, or None when it is.

    transformers 5 writes model weights (or, under ZeRO-3, only DeepSpeed's shards),
    ``optimizer.pt`` and ``scheduler.pt`` (under DeepSpeed: a ``global_step*`` folder with
    ``*optim_states.pt`` that also holds the scheduler), ``rng_state.pth`` (one
    ``rng_state_<rank>.pth`` per process) and, last, ``trainer_state.json``.
    """
    path = Path(path)
    if not path.is_dir():
        return "not a folder"
    names = {p.name for p in path.iterdir()}
    missing = []
    if "trainer_state.json" not in names:
        missing.append("trainer_state.json")
    if not any(n.startswith("rng_state") and n.endswith(".pth") for n in names):
        missing.append("rng_state*.pth")
    deepspeed_dirs = [p for p in path.glob("global_step*") if p.is_dir()]
    if deepspeed_dirs:
        if not any(f.name.endswith("optim_states.pt") for d in deepspeed_dirs for f in d.iterdir()):
            missing.append("global_step*/*optim_states.pt")
    else:
        missing += [n for n in ("optimizer.pt", "scheduler.pt") if n not in names]
        if not names & {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                        "adapter_model.safetensors", "adapter_model.bin"}:
            missing.append("model weights")
    return f"missing {', '.join(missing)}" if missing else None


def latest_complete_checkpoint(output_dir: str | Path, warn: bool = True) -> Path | None:
    """The highest-step complete checkpoint; partial ones are skipped with a warning."""
    for path in checkpoint_dirs(output_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if warn:
            logger.warning("skipping partial checkpoint %s (%s); it is not read", path, problem)
    return None


def resolve_resume(value: Any, output_dir: str | Path, warn: bool = True) -> str | None:
    """The checkpoint folder to resume from (see :func:`parse_resume`), or None for a fresh run."""
    resume = parse_resume(value)
    if resume is None:
        return None
    if resume is True:
        found = latest_complete_checkpoint(output_dir, warn=warn)
        if found is None:
            raise RecipeError(f"resume_from_checkpoint=true but output_dir '{output_dir}' holds no complete checkpoint "
                         f"(checkpoint-* folders found: {len(checkpoint_dirs(output_dir))})")
        return str(found)
    problem = checkpoint_problem(resume)
    if problem is not None:
        raise RecipeError(f"resume_from_checkpoint '{resume}' is not a complete checkpoint ({problem})")
    return resume


def holds_trained_run(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds a final model, training results or any checkpoint."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return False
    return bool(checkpoint_dirs(folder)) or any((folder / name).exists() for name in TRAINED_MARKERS)


# DeepSpeed ZeRO writes one optimizer-state shard per data-parallel rank:
# global_stepN/[bf16_]zero_pp_rank_<rank>_mp_rank_<mp>_optim_states.pt
ZERO_SHARD_RE = re.compile(r"zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt$")


def zero_checkpoint_world_size(checkpoint: str | Path) -> int | None:
    """How many ranks wrote this DeepSpeed ZeRO checkpoint (its optimizer shards); None when
    it is not a ZeRO checkpoint (DDP or one process: full optimizer state, any world size)."""
    folder = Path(checkpoint)
    latest = folder / "latest"
    tags = [latest.read_text().strip()] if latest.is_file() else []
    step_dirs = [folder / t for t in tags if (folder / t).is_dir()] or sorted(folder.glob("global_step*"))
    ranks = {int(m.group(1)) for d in step_dirs for f in d.iterdir() if (m := ZERO_SHARD_RE.search(f.name))}
    return len(ranks) or None


def check_resume_world_size(checkpoint: str | Path, num_processes: int) -> None:
    """Refuse to resume a ZeRO checkpoint on another process count, saying how to go on.

    Its optimizer states are partitioned per rank, and DeepSpeed loads them only on the
    same number of ranks; a DDP or single-process checkpoint resumes on any count (the
    global batch, derived from the total process count, stays the same).
    """
    written_by = zero_checkpoint_world_size(checkpoint)
    if written_by is None or written_by == num_processes:
        return
    step = next(iter(sorted(Path(checkpoint).glob("global_step*"))), Path(checkpoint) / "global_stepN")
    raise RecipeError(
        f"checkpoint '{checkpoint}' holds DeepSpeed ZeRO optimizer states partitioned over {written_by} processes, "
        f"but this run has {num_processes}; resume it with num_processes={written_by} (e.g. NUM_PROCESSES="
        f"{written_by}, on the same number of GPUs in total), or convert it to a universal checkpoint with "
        f"`python -m deepspeed.checkpoint.ds_to_universal --input_folder {step} --output_folder {step}_universal` "
        "and load that with DeepSpeed's `checkpoint: {load_universal: true}` (README \"Scaling out\"), or start "
        f"a new run from its weights: --model_name_or_path={checkpoint} (optimizer state and step count are lost)"
    )


def check_output_dir(args, dry_run: bool = False, num_processes: int | None = None) -> None:
    """Refuse to train into a used ``output_dir`` unless resuming it or told to overwrite it.

    ``args`` is a :class:`~alignment_unidpo.configs.UniDPOConfig`. Also checks, before
    anything is loaded, that a requested resume has a complete checkpoint to start from
    and, given ``num_processes`` (the total), that a ZeRO checkpoint is resumed on the
    process count that wrote it (:func:`check_resume_world_size`).
    Raises :class:`~alignment_unidpo.base.errors.RecipeError` (printed as one ``error:`` line).
    A ``dry_run`` (print the resolved recipe, train nothing) is never refused.
    """
    if dry_run:
        return
    if parse_resume(args.resume_from_checkpoint) is not None:
        checkpoint = resolve_resume(args.resume_from_checkpoint, args.output_dir, warn=False)
        if num_processes is not None:
            check_resume_world_size(checkpoint, num_processes)
        return
    if holds_trained_run(args.output_dir) and not getattr(args, "overwrite_output_dir", False):
        raise RecipeError(f"output_dir '{args.output_dir}' already holds a trained model/checkpoints; pass "
                     "--resume_from_checkpoint=true to continue it or --overwrite_output_dir=true to replace it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_stale_tmp_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete ``tmp-checkpoint-*`` folders: checkpoints a killed run did not finish writing."""
    folder = Path(output_dir)
    stale = sorted(folder.glob(TMP_PREFIX + "checkpoint-*")) if folder.is_dir() else []
    for path in stale:
        logger.warning("removing %s: a checkpoint left unfinished by an interrupted run", path)
        _remove(path)
    return stale


def clear_previous_run(output_dir: str | Path) -> list[Path]:
    """Delete a previous run's ``checkpoint-*`` folders, final files (:data:`RUN_FILE_PATTERNS`) and
    the folders it wrote beside them (:data:`RUN_DIRS`: a stale ``merged/`` model would otherwise
    be evaluated as the new run's).

    Other files in the folder (notes, a sweep's log, logging folders) are left alone.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    removed = checkpoint_dirs(folder) + [folder / name for name in RUN_DIRS if (folder / name).is_dir()]
    for pattern in RUN_FILE_PATTERNS:
        removed += [p for p in folder.glob(pattern) if p.is_file()]
    for path in removed:
        _remove(path)
    if removed:
        logger.warning("overwrite_output_dir: removed %d folder(s)/file(s) of the previous run in %s",
                       len(removed), folder)
    return removed


def prepare_output_dir(args) -> None:
    """Main process only, before training: drop stale temporary checkpoints and, with
    ``overwrite_output_dir`` and no resume, everything the previous run left."""
    remove_stale_tmp_checkpoints(args.output_dir)
    if getattr(args, "overwrite_output_dir", False) and parse_resume(args.resume_from_checkpoint) is None:
        clear_previous_run(args.output_dir)


# --- loss state carried across a resume --------------------------------------------------
def checkpoint_step(checkpoint: str | Path) -> int:
    """The optimizer step a checkpoint was saved at (its ``trainer_state.json``)."""
    return int(read_json_file(Path(checkpoint) / "trainer_state.json")["global_step"])


def read_loss_state(checkpoint: str | Path | None) -> dict[str, Any] | None:
    """The loss state saved with ``checkpoint`` (see :func:`loss_state`); None when there is
    no checkpoint or it has none (written by an older version, with a warning)."""
    if checkpoint is None:
        return None
    path = Path(checkpoint) / LOSS_STATE_NAME
    if not path.is_file():
        logger.warning("%s has no %s (written by an older version): train_loss will cover only the resumed steps",
                       checkpoint, LOSS_STATE_NAME)
        return None
    return read_json_file(path)


def carried_loss_sum(state: dict[str, Any] | None) -> float | None:
    """The loss summed over the steps up to the checkpoint that the resumed Trainer does not
    hold itself: all of them, less the open window's when that window is continued."""
    if state is None:
        return None
    if "window_loss_sum" in state:
        return float(state["logged_loss_sum"])
    return float(state["loss_sum"])  # an older checkpoint: the window is not continued


# --- atomic checkpoint writes -------------------------------------------------------------
def _fsync_tree(folder: Path) -> None:
    """Flush every file, then every folder, of ``folder`` to disk."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
    for root, dirs, _ in os.walk(folder, topdown=False):
        for name in dirs + ["."]:
            _fsync_dir(Path(root) / name)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_checkpoint(tmp: Path, final: Path) -> None:
    """Sync ``tmp`` and rename it to ``final`` (one atomic rename on one filesystem).

    A ``final`` already there (the same step saved again) is moved aside first and removed
    after the rename, so at every instant one complete ``final`` or none exists.
    """
    _fsync_tree(tmp)
    old = None
    if final.exists():
        old = final.with_name(f"{TMP_PREFIX}old-{final.name}")
        if old.exists():
            _remove(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        _remove(old)


# --- the trainer's side ---------------------------------------------------------------------
def logging_window_callback(trainer: "CheckpointingMixin"):
    """The callback that, at the start of ``train()`` (after the Trainer has reset its loss
    accumulator), calls :meth:`CheckpointingMixin.begin_logging_window`: a resumed run
    reopens the logging window that was open at its checkpoint."""
    from transformers import TrainerCallback  # here: this module is read before anything heavy loads

    class ContinueLoggingWindow(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            trainer.begin_logging_window()

    return ContinueLoggingWindow()


class CheckpointingMixin:
    """Checkpoints of a ``transformers.Trainer``, mixed in before it: atomic checkpoint
    writes, resuming from the latest complete checkpoint, and the training loss and logging
    window carried across a resume. Its methods are the ones that reach into the Trainer's
    own state (``_tr_loss``, ``_total_loss_scalar``, ``_globalstep_last_logged``,
    ``_initial_global_step``, its ``_save_*`` helpers).

    The trainer may offer ``window_metrics()`` / ``restore_window_metrics(metrics)``: the
    per-pair metrics of the open logging window, which a checkpoint keeps.
    """

    _carried_loss_sum: float | None = None  # loss summed over the logged steps before the resumed checkpoint
    _resumed: tuple[str, dict[str, Any] | None] | None = None  # (checkpoint, its loss state) until train begins
    _window_opened_after = 0  # the step the first logging window of this train() call opened after

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(logging_window_callback(self))

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """``resume_from_checkpoint``: true (also the string "True" a recipe gives) resumes from
        the latest *complete* checkpoint of ``output_dir``, a path from that checkpoint; partial
        checkpoints are skipped, stale ``tmp-checkpoint-*`` folders removed. A resumed run logs
        where it resumed from and continues the logging window open at the checkpoint."""
        checkpoint = resolve_resume(resume_from_checkpoint, self.args.output_dir)
        if self.args.should_save:
            remove_stale_tmp_checkpoints(self.args.output_dir)
        state = read_loss_state(checkpoint)
        if checkpoint is not None:
            step = checkpoint_step(checkpoint)
            if self.is_world_process_zero():
                logger.info("resuming from %s (step %d)", checkpoint, step)
            self._resumed = (checkpoint, state)
        self._carried_loss_sum = carried_loss_sum(state)
        return super().train(checkpoint, *args, **kwargs)

    # --- loss state carried across a resume ------------------------------------------------
    def loss_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the training loss: ``loss_sum`` over every optimizer step so
        far (the steps before a resume included), ``logged_loss_sum`` over the steps up to the last
        log, and the logging window still open: ``window_loss_sum`` over its steps and
        ``window_start_step``, the step it opened after.

        Collective when several processes train (the open window's sum is averaged over them,
        as the Trainer does at each logging step); call it on all ranks.
        """
        pending = self._tr_loss.detach()
        if self.accelerator.num_processes > 1:
            pending = self.accelerator.gather(pending.reshape(1)).mean()
        window = float(pending.item())
        logged = (self._carried_loss_sum or 0.0) + self._total_loss_scalar
        return {"loss_sum": logged + window, "logged_loss_sum": logged, "window_loss_sum": window,
                "window_start_step": self._globalstep_last_logged, "global_step": self.state.global_step}

    def begin_logging_window(self) -> None:
        """At the start of ``train()`` (:func:`logging_window_callback`): continue the window of
        the checkpoint resumed from, if any, and note the step the first window opens after."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            self.continue_logging_window(*resumed)
        self._window_opened_after = self._globalstep_last_logged

    def continue_logging_window(self, checkpoint: str | Path, state: dict[str, Any] | None) -> None:
        """At the start of a resumed ``train()``: reopen the logging window that was open at the
        checkpoint, so that the first log after the resume covers the same steps, loss and pairs
        as in the uninterrupted run.

        The Trainer opens a new window at the checkpoint's step instead: it divides the loss of
        the resumed steps by their count only and forgets the steps before. Here its loss
        accumulator starts at the window's saved sum (on every process: the Trainer averages the
        accumulators over processes when it logs, and the saved sum is that average already),
        its last logged step goes back to where the window opened, and the window's per-pair
        metrics are handed back to the trainer (``restore_window_metrics``).
        """
        if state is None or "window_loss_sum" not in state:
            return
        self._tr_loss += state["window_loss_sum"]
        self._globalstep_last_logged = int(state["window_start_step"])
        path = Path(checkpoint) / WINDOW_METRICS_NAME
        if path.is_file():
            from safetensors.torch import load_file

            self.restore_window_metrics(load_file(path))

    def save_window_metrics(self, folder: Path) -> None:
        """The open window's per-pair metrics (``window_metrics()``), when there are any."""
        metrics = self.window_metrics() if hasattr(self, "window_metrics") else {}
        if metrics:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in metrics.items()}, str(folder / WINDOW_METRICS_NAME))

    def _finalize_training(self, trial, num_train_samples, start_time):
        """``train_loss`` over the whole run, the steps before a resume included.

        The Trainer divides its loss sum by the steps of this ``train()`` call only; scaling
        the sum by (steps now / all steps) after adding the carried part turns that into
        (carried + own) / all steps without copying the Trainer's code.
        """
        if self._carried_loss_sum is not None:
            self._total_loss_scalar += self._tr_loss.item()
            self._tr_loss.zero_()
            steps_now = max(self.state.global_step - self._initial_global_step, 0.001)
            total = self._carried_loss_sum + self._total_loss_scalar
            self._total_loss_scalar = total * steps_now / max(self.state.global_step, 1)
        return super()._finalize_training(trial, num_train_samples, start_time)

    # --- atomic checkpoint writes ----------------------------------------------------------
    def _save_checkpoint(self, model, trial) -> None:
        """``Trainer._save_checkpoint`` writing into ``tmp-checkpoint-N``, renamed when complete.

        Every process writes its part (DeepSpeed's ``save_checkpoint`` must run on all ranks
        and writes into the folder it is given); after a barrier the saving process(es)
        (``args.should_save``) rename the folder, another barrier makes it visible to all,
        and only then are old checkpoints rotated (``save_total_limit``), so a rotation never
        sees a half-written folder and never deletes the last complete one for a partial one.
        """
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        args, state = self.args, self.state
        name = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        run_dir = Path(self._get_output_dir(trial=trial))
        final, tmp = run_dir / name, run_dir / (TMP_PREFIX + name)
        if args.should_save and tmp.exists():
            _remove(tmp)
        self.accelerator.wait_for_everyone()
        self.save_model(str(tmp), _internal_call=True)
        if state.best_global_step and args.save_strategy in ("steps", "epoch", "best"):
            self.accelerator.wait_for_everyone()
            best = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}"
            if best.exists() or state.best_global_step == state.global_step:
                state.best_model_checkpoint = str(best)  # the final name: the folder is renamed below
        if not args.save_only_model:
            self._save_optimizer_and_scheduler(str(tmp))
            self._save_scaler(str(tmp))
            self._save_rng_state(str(tmp))
        losses = self.loss_state()  # collective: every rank
        if args.should_save:
            self.save_window_metrics(tmp)
            self._save_trainer_state(tmp, losses)
        self.accelerator.wait_for_everyone()
        if args.should_save:
            publish_checkpoint(tmp, final)
        self.accelerator.wait_for_everyone()
        if args.push_to_hub:
            self._push_from_checkpoint(str(final))
        if args.should_save:
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=args.save_total_limit,
                               best_model_checkpoint=state.best_model_checkpoint, use_mtime=True)

    def _save_trainer_state(self, folder: Path, losses: dict[str, Any]) -> None:
        """trainer_state.json (with the stateful callbacks' state), as upstream, and the loss state."""
        from transformers.trainer import TRAINER_STATE_NAME
        from transformers.trainer_callback import ExportableState

        state = self.state
        for cb in [c for c in self.callback_handler.callbacks + [self.control] if isinstance(c, ExportableState)]:
            cb_name = cb.__class__.__name__
            if isinstance(state.stateful_callbacks.get(cb_name), list):
                state.stateful_callbacks[cb_name].append(cb.state())
            else:
                state.stateful_callbacks[cb_name] = cb.state()
        write_text_atomic(folder / LOSS_STATE_NAME, json.dumps(losses))
        state.save_to_json(str(folder / TRAINER_STATE_NAME))
