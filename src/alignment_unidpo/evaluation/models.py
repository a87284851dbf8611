"""``make eval MODEL=...``: the checkpoint evaluated, a local folder or a hub id at a revision.

* A local folder (one that exists, or a path: ``./x``, ``/x``, ``a/b/c``) is evaluated as
  ``RUN=...`` is; a missing one is :func:`~alignment_unidpo.checks.local_model_problem`'s line.
* A hub id (``org/name``), at ``--revision`` (a branch, tag or commit; default main). With
  ``HF_HUB_OFFLINE`` set it must be in the local cache (:func:`cached_snapshot`, one line
  from :func:`~alignment_unidpo.checks.hub_model_problem` when it is not); online it is
  downloaded (one weight format) just before it loads (:func:`download`).

Either way a hub model loads from its snapshot folder in the cache, which huggingface_hub
names by the commit: :func:`identity` reads the commit loaded from that folder, and the
results record the id, the revision asked for and that commit. :func:`claim_out` keeps an
output folder to one commit, so a resumed evaluation never mixes two.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

from ..base.errors import DataValidationError
from ..base.files import write_text_atomic
from ..checks import hub_model_problem, looks_local

KEY = "MODEL"  # how error lines name it
DEFAULT_REVISION = "main"
MODEL_FILES = ("config.json", "adapter_config.json")  # what makes a folder loadable as a model
WEIGHTS = ("*.safetensors", "*.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# never needed to load a model for generation: other frameworks' weights, training state
NOT_LOADED = ("*.pt", "*.pth", "*.ckpt", "*.gguf", "*.onnx", "*.h5", "*.msgpack", "*.ot", "original/*",
              "global_step*", "training_args.bin")
COMMIT = re.compile(r"[0-9a-f]{40}")
RECORD = "model.json"  # in the output folder: the hub model (and commit) its results are of


def is_local(name: str) -> bool:
    """A folder rather than a hub id: an existing path, or one written as a path."""
    return looks_local(name) or Path(name).expanduser().exists()


def check_hub_id(name: str) -> None:
    """One error line when ``name`` is neither a local folder nor a valid hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise DataValidationError(f"{KEY}: {name!r} is neither a local folder nor a hub id (org/name)") from None


def hint(repo_id: str, revision: str) -> str:
    return f"hf download {repo_id} --revision {revision}"


def partial(repo_id: str, revision: str, what: str) -> DataValidationError:
    return DataValidationError(f"{KEY}: {repo_id!r} at revision {revision!r} is only partly in the local Hugging Face "
                               f"cache ({what}): download it ({hint(repo_id, revision)})")


def weights_problem(folder: Path) -> str | None:
    """What ``folder`` lacks of its weights: all of them, or a shard its index names."""
    if not any(p.is_file() for pattern in WEIGHTS for p in folder.glob(pattern)):
        return f"no weights: no {' or '.join(WEIGHTS)}"
    for index in WEIGHT_INDEXES:
        if (folder / index).is_file():
            shards = set(json.loads((folder / index).read_text()).get("weight_map", {}).values())
            missing = sorted(s for s in shards if not (folder / s).is_file())
            if missing:
                return f"{len(missing)} of {len(shards)} weight shards missing, e.g. {missing[0]}"
    return None


def cached_snapshot(repo_id: str, revision: str) -> Path:
    """Offline: the folder of ``repo_id`` at ``revision`` in the local cache, with a model's
    config and its weights in it; else one error line naming the id, the revision and the
    download command."""
    from huggingface_hub import try_to_load_from_cache

    problem = hub_model_problem(KEY, repo_id, revision)
    if problem:
        typo = "/" in repo_id and Path(repo_id).parent.is_dir()  # e.g. outputs/<a run that is not there>
        raise DataValidationError(problem + (f"; nor is there a local folder {repo_id!r}" if typo else ""))
    found = [Path(p) for name in MODEL_FILES
             if isinstance(p := try_to_load_from_cache(repo_id, name, revision=revision), str)]
    if not found:
        raise partial(repo_id, revision, f"no {' or '.join(MODEL_FILES)}")
    folder = found[0].parent
    missing = weights_problem(folder)
    if missing:
        raise partial(repo_id, revision, missing)
    return folder


def offline_snapshot(repo_id: str, revision: str) -> Path | None:
    """With ``HF_HUB_OFFLINE`` set (as huggingface_hub reads it), :func:`cached_snapshot`;
    online None: :func:`download` brings the revision just before it loads."""
    from huggingface_hub import is_offline_mode

    return cached_snapshot(repo_id, revision) if is_offline_mode() else None


def not_loaded(files: list[str]) -> list[str]:
    """The repository's files left out of a download: :data:`NOT_LOADED`, and the ``.bin``
    weights when safetensors ones are there (the same weights twice)."""
    patterns = list(NOT_LOADED)
    if any(fnmatch.fnmatch(name, "*.safetensors") for name in files):
        patterns += ["pytorch_model*.bin", "adapter_model.bin"]
    return patterns


def download(repo_id: str, revision: str) -> Path:
    """Online: the snapshot of ``repo_id`` at ``revision``, downloaded now (files already in
    the cache are kept); the hub's refusals as one error line."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
        folder = Path(snapshot_download(repo_id, revision=revision, ignore_patterns=not_loaded(files)))
    except RevisionNotFoundError:
        raise DataValidationError(f"{KEY}: {repo_id!r} has no revision {revision!r} on the hub "
                                  "(--revision takes a branch, tag or commit)") from None
    except GatedRepoError:
        raise DataValidationError(f"{KEY}: {repo_id!r} is gated: accept its terms on its hub page, then log in "
                                  "(hf auth login, or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise DataValidationError(f"{KEY}: no model {repo_id!r} on the hub (or a private one: hf auth login), and "
                                  f"no local folder {repo_id!r}") from None
    except Exception as err:  # the network, the disk: one line, whatever huggingface_hub raised
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DataValidationError(f"{KEY}: could not download {repo_id!r} at revision {revision!r} "
                                  f"({type(err).__name__}: {first}); a copy already in the cache is used with "
                                  "HF_HUB_OFFLINE=1") from None
    missing = weights_problem(folder)
    if missing:
        raise DataValidationError(f"{KEY}: {repo_id!r} at revision {revision!r} is not a model to load ({missing})")
    return folder


def commit_of(folder: str | Path, repo_id: str) -> str:
    """The commit of a snapshot folder of ``repo_id`` in the hub cache
    (``.../models--org--name/snapshots/<commit>``)."""
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(folder)
    if not (COMMIT.fullmatch(folder.name) and folder.parent.name == "snapshots"
            and folder.parent.parent.name == repo_folder_name(repo_id=repo_id, repo_type="model")):
        raise ValueError(f"{folder} is not a snapshot folder of {repo_id} in the hub cache")
    return folder.name


def identity(run: str | None, model: str, revision: str) -> dict[str, Any]:
    """How results name the model: ``RUN``'s folder (or none, grading given outputs); for a
    hub id, the id, the revision asked for and the commit of the snapshot ``run`` loaded."""
    if not model:
        return {"model": run or "(none: grade-only)"}
    return {"model": model, "revision": revision or DEFAULT_REVISION, "commit": commit_of(run, model),
            "loaded from": run}


def label(run: str, model: str) -> str:
    """A short name for the model: a hub id's name, or the folder's."""
    return model.rsplit("/", 1)[-1] if model else Path(run).resolve().name


def default_out(model: str, revision: str, suite: str) -> Path:
    """``outputs/eval/<org>--<name>[@<revision>]/<suite>``: a hub model's results."""
    tag = "" if revision in ("", DEFAULT_REVISION) else "@" + re.sub(r"[^\w.-]", "-", revision)
    return Path("outputs") / "eval" / (model.replace("/", "--") + tag) / suite


def claim_out(out: Path, record: dict[str, Any]) -> None:
    """Keep ``out`` to the results of one hub model at one commit: record it there, or one
    error line when ``out`` already holds another's (e.g. after the branch moved on)."""
    path = out / RECORD
    wanted = {k: record[k] for k in ("model", "revision", "commit")}
    if path.is_file():
        try:
            held = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            held = None
        if not isinstance(held, dict) or (held.get("model"), held.get("commit")) != (wanted["model"],
                                                                                     wanted["commit"]):
            what = (f"{held.get('model')} at commit {held.get('commit')}" if isinstance(held, dict)
                    else "an unreadable record")
            raise DataValidationError(f"{out} holds the results of {what}; this run loads {wanted['model']} at "
                                      f"commit {wanted['commit']} (revision {wanted['revision']}): choose another "
                                      f"--out=... or move that folder away")
    write_text_atomic(path, json.dumps(wanted, indent=2) + "\n")
