"""Preference data: load sources, validate every row, normalise, mix, split.

A record has ``prompt``, ``chosen``, ``rejected``, ``score_chosen``, ``score_rejected``.
``prompt`` is a string or a chat message list; ``chosen``/``rejected`` are strings or
message lists whose last turn is the assistant's answer (earlier turns, when present,
are the conversation and replace ``prompt``, as in ``ultrafeedback_binarized``).

Image rows (vision-language preference data, e.g. the authors' MM-RLHF pairs) add
``images``: a list of image file paths, resolved against the mixture entry's ``image_root``
(or the working directory, then the repository), or of embedded images (``{"bytes": <base64>}``
in JSON records; a ``datasets`` ``Image`` column, read undecoded), which are written once into
a content-addressed image store and replaced by their path there (:func:`store_image_bytes`);
the prompt holds one ``<image>`` placeholder per image. The authors' pairs format names the
prompt ``instruction``; it is read as ``prompt``. Before launch every image must exist (or its
bytes decode) and open, and the placeholders must match the images; a source may not mix text
rows with image rows, nor may a mixture mix text sources with image sources (see
:func:`image_paths`).

Rows are normalised to ``messages`` (the conversation up to the answer), ``chosen`` and
``rejected`` (answer strings) and float scores. Rule violations that make the data
unusable raise :class:`DataValidationError` naming source, row and field; rows that are
merely useless (chosen identical to rejected) are dropped with a warning and a count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from ..base.errors import DataValidationError
from ..base.files import atomic_path
from ..base.jsonio import read_json_records
from ..base.paths import REPO_ROOT

logger = logging.getLogger(__name__)

REQUIRED_TEXT_FIELDS = ("prompt", "chosen", "rejected")
PROMPT_ALIASES = ("prompt", "instruction")  # the authors' multimodal pairs name the prompt `instruction`
IMAGE_FIELD = "images"
IMAGE_PLACEHOLDER = "<image>"
IMAGE_STORE_ENV = "ALIGNMENT_UNIDPO_IMAGE_CACHE"  # the folder embedded images are written to
SCORE_FIELDS = ("score_chosen", "score_rejected")
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
MAX_REPORTED_ERRORS = 10


@dataclass
class DropReport:
    """How many rows each rule dropped, per source."""

    counts: Counter = field(default_factory=Counter)

    def add(self, rule: str, n: int = 1) -> None:
        self.counts[rule] += n

    def summary(self) -> str:
        if not self.counts:
            return "no rows dropped"
        return ", ".join(f"{rule}: {n}" for rule, n in sorted(self.counts.items()))


def is_local_source(spec: Any) -> bool:
    """Whether :func:`load_source` reads this mixture entry from local disk, or fails on it
    as a missing local path, rather than asking the hub (checked before launch)."""
    if not isinstance(spec, dict) or not spec.get("path"):
        return True
    path = str(spec["path"])
    local = Path(path)
    return (local.exists() or (not local.is_absolute() and (REPO_ROOT / local).exists())
            or path.startswith((".", "/")) or local.suffix in LOCAL_FORMATS)


def load_source(spec: dict[str, Any]) -> datasets.Dataset | list[dict[str, Any]]:
    """One mixture entry: a hub id, a local file or a local folder of data files."""
    spec = dict(spec)
    path = spec.pop("path", None)
    if not path:
        raise DataValidationError(f"dataset entry {spec} has no 'path'")
    split = spec.pop("split", "train")
    spec.pop("fraction", None)
    spec.pop("image_root", None)
    local = Path(path)
    if not local.exists() and not local.is_absolute() and (REPO_ROOT / local).exists():
        local = REPO_ROOT / local
    if local.is_file() and local.suffix in (".json", ".jsonl"):
        return read_json_records(local)
    if local.is_file():
        fmt = LOCAL_FORMATS.get(local.suffix)
        if fmt is None:
            raise DataValidationError(f"{path}: unsupported file type {local.suffix!r}; use json, jsonl, parquet or csv")
        return undecoded_images(datasets.load_dataset(fmt, data_files=str(local), split="train"))
    if local.is_dir():
        return undecoded_images(datasets.load_dataset(str(local), split=split, **spec))
    if path.startswith((".", "/")) or local.suffix in LOCAL_FORMATS:
        raise DataValidationError(f"{path}: no such file or folder")
    return undecoded_images(datasets.load_dataset(path, split=split, **spec))


def _undecoded(feature: Any) -> Any:
    """``feature`` with every ``Image`` in it set to ``decode=False``."""
    if isinstance(feature, datasets.Image):
        return datasets.Image(mode=feature.mode, decode=False)
    if isinstance(feature, datasets.List):
        return datasets.List(_undecoded(feature.feature), length=feature.length)
    if isinstance(feature, datasets.LargeList):
        return datasets.LargeList(_undecoded(feature.feature))
    if isinstance(feature, dict):
        return {name: _undecoded(sub) for name, sub in feature.items()}
    return feature


def undecoded_images(ds: datasets.Dataset) -> datasets.Dataset:
    """``ds`` (as ``load_dataset`` returns it) with its ``Image`` columns read undecoded: each image
    a ``{"bytes", "path"}`` mapping rather than a PIL image, so its bytes reach the image store as
    they are. Only the features change (an undecoded ``Image`` has the same Arrow type): the data
    is not copied. A dataset without images is returned as it is."""
    features = datasets.Features({name: _undecoded(f) for name, f in ds.features.items()})
    if features == ds.features:
        return ds
    info = ds.info.copy()
    info.features = features
    return datasets.Dataset(ds.data, info=info, split=ds.split)


def as_messages(value: Any, where: str, role: str) -> list[dict[str, str]]:
    """``value`` as chat messages: a string is one message of ``role``; a list must hold
    ``{role, content}`` messages with string values (other keys are dropped). Anything else,
    a message without a role included, is a :class:`DataValidationError` naming ``where``.
    The one rule for messages: training data and ``make data``'s prompts both go through it."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise DataValidationError(f"{where}: expected a string or a list of {{role, content}} messages, got {value!r:.80}")


def prompt_messages(value: Any, where: str) -> list[dict[str, str]]:
    """A prompt (a string: the user's turn; or chat messages) as messages; an empty one is refused."""
    messages = as_messages(value, where, "user")
    if not any(m["content"].strip() for m in messages):
        raise DataValidationError(f"{where}: empty prompt")
    return messages


def with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """``messages`` behind a system turn of ``system_prompt``, unless they open with their own."""
    if system_prompt and messages[0]["role"] != "system":
        return [{"role": "system", "content": system_prompt}] + messages
    return messages


def _score(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataValidationError(f"{where}: score must be a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise DataValidationError(f"{where}: score must be finite, got {value}")
    return float(value)


def resolve_image_root(image_root: str | Path | None) -> Path | None:
    """``image_root`` as a folder: as given, or relative to the repository when only that exists."""
    if image_root is None:
        return None
    root = Path(image_root)
    if not root.exists() and not root.is_absolute() and (REPO_ROOT / root).exists():
        root = REPO_ROOT / root
    return root


def _resolve_image(path: str, image_root: Path | None) -> Path:
    local = Path(path)
    if local.is_absolute():
        return local
    if image_root is not None:
        return image_root / local
    if not local.exists() and (REPO_ROOT / local).exists():
        return REPO_ROOT / local
    return local


def image_store_dir() -> Path:
    """The content-addressed image store: ``$ALIGNMENT_UNIDPO_IMAGE_CACHE``, else ``.cache/images/``
    of the repository. Created by the first embedded image written to it, never before."""
    return Path(os.environ.get(IMAGE_STORE_ENV) or REPO_ROOT / ".cache" / "images")


def _verified_image(source: Path | bytes, what: str) -> str:
    """Open the image file at ``source`` (or its ``bytes``) with Pillow and verify it; its format in
    lower case (``png``, ``jpeg``...). Anything Pillow refuses raises :class:`DataValidationError`:
    ``what`` names the row, field and image."""
    from PIL import Image  # Pillow: a dependency of matplotlib and transformers' image processors

    opened = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(opened) as image:
            image.verify()
            return (image.format or "img").lower()
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for a bad file
        raise DataValidationError(f"{what}: {str(err).replace(f' {opened!r}', '')}") from None


def store_image_bytes(data: bytes, where: str) -> Path:
    """Verify one embedded image and return its file in the image store (:func:`image_store_dir`):
    ``<sha256 of the bytes>.<format>``, written atomically the first time and reused, never
    rewritten, after; the same image embedded or on disk is then the same bytes for the
    reference cache's key. ``where`` names the row, field and image in errors."""
    fmt = _verified_image(data, f"{where}: embedded bytes are not a readable image")
    path = image_store_dir() / f"{hashlib.sha256(data).hexdigest()}.{fmt}"
    if path.is_file():
        return path
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
    except OSError as err:
        raise DataValidationError(f"{where}: cannot write the embedded image to the image store {path.parent} "
                                  f"({err}); set {IMAGE_STORE_ENV} to a writable folder") from None
    return path


def _embedded_bytes(entry: dict[str, Any], where: str) -> bytes | None:
    """An ``images`` object's bytes: raw (a ``datasets`` ``Image`` read undecoded) or base64 text
    (JSON); None when it has none (then its ``path`` is the image)."""
    data = entry.get("bytes")
    if data is None or isinstance(data, bytes):
        return data
    if not isinstance(data, str):
        raise DataValidationError(f"{where}: 'bytes' must be base64 text, got {type(data).__name__}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise DataValidationError(f"{where}: 'bytes' is not valid base64 ({err})") from None


def image_paths(value: Any, messages: list[dict[str, str]], where: str, image_root: Path | None) -> list[str]:
    """Check a row's ``images`` and return them as resolved path strings.

    Each entry is either a path naming an image file that exists and that Pillow can open and
    verify, or an embedded image: ``{"bytes": ...}`` (base64 text, or raw bytes from a
    ``datasets`` ``Image`` column; a ``path`` beside them is a name only) whose bytes Pillow
    verifies, stored by :func:`store_image_bytes` and given as that file's path. An object with no
    bytes is its ``path`` (``datasets``' form of an image on disk). The ``<image>`` placeholders of
    the prompt must number exactly the images (one per image, in order, as the chat template
    places them). Raises :class:`DataValidationError` naming ``where`` and the field."""
    field_ = f"{where}, field '{IMAGE_FIELD}'"
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise DataValidationError(f"{field_}: expected a non-empty list of image paths, got {value!r:.80}")
    placeholders = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
    if placeholders != len(value):
        raise DataValidationError(
            f"{field_}: {len(value)} image(s) but {placeholders} '{IMAGE_PLACEHOLDER}' placeholder(s) in the prompt"
        )
    resolved = []
    for j, entry in enumerate(value):
        if isinstance(entry, dict) and (data := _embedded_bytes(entry, f"{field_}[{j}]")) is not None:
            resolved.append(str(store_image_bytes(data, f"{field_}[{j}]")))
            continue
        if isinstance(entry, dict):
            entry = entry.get("path")
        if not isinstance(entry, str) or not entry.strip():
            raise DataValidationError(f"{field_}[{j}]: expected an image file path or {{\"bytes\": <base64>}}, "
                                      f"got {value[j]!r:.80}")
        path = _resolve_image(entry, image_root)
        if not path.is_file():
            root = f" (image_root {image_root})" if image_root is not None else " (no image_root set)"
            raise DataValidationError(f"{field_}[{j}]: no such image file {path}{root}")
        _verified_image(path, f"{field_}[{j}]: unreadable image {path}")
        resolved.append(str(path))
    return resolved


def normalize_row(
    row: dict[str, Any], where: str, system_prompt: str | None, require_scores: bool, image_root: Path | None = None
) -> dict[str, Any]:
    """Validate one record and bring it to the canonical form (see module docstring)."""
    if row.get("prompt") is None and row.get("instruction") is not None:  # the authors' multimodal pairs
        row = {**row, "prompt": row["instruction"]}
    for name in REQUIRED_TEXT_FIELDS + (SCORE_FIELDS if require_scores else ()):
        if row.get(name) is None:
            raise DataValidationError(f"{where}, field '{name}': missing")
    answers = {}
    context = None
    for name in ("chosen", "rejected"):
        msgs = as_messages(row[name], f"{where}, field '{name}'", "assistant")
        if msgs[-1]["role"] != "assistant":
            raise DataValidationError(
                f"{where}, field '{name}': the last message must be the assistant's answer, got role {msgs[-1]['role']!r}"
            )
        if not msgs[-1]["content"].strip():
            raise DataValidationError(f"{where}, field '{name}': empty completion")
        if IMAGE_PLACEHOLDER in msgs[-1]["content"]:
            raise DataValidationError(f"{where}, field '{name}': '{IMAGE_PLACEHOLDER}' belongs in the prompt, not the answer")
        if len(msgs) > 1:
            if context is not None and context != msgs[:-1]:
                raise DataValidationError(f"{where}, field '{name}': its conversation differs from the chosen one's")
            context = msgs[:-1]
        answers[name] = msgs[-1]["content"]
    if context is None:
        context = prompt_messages(row["prompt"], f"{where}, field 'prompt'")
    context = with_system_prompt(context, system_prompt)
    scores = {
        name: _score(row[name], f"{where}, field '{name}'") if row.get(name) is not None else 0.0
        for name in SCORE_FIELDS
    }
    out = {"messages": context, "chosen": answers["chosen"], "rejected": answers["rejected"], **scores}
    if row.get(IMAGE_FIELD) is not None:
        out[IMAGE_FIELD] = image_paths(row[IMAGE_FIELD], context, where, image_root)
    elif any(IMAGE_PLACEHOLDER in m["content"] for m in context):
        raise DataValidationError(f"{where}, field '{IMAGE_FIELD}': missing, but the prompt has '{IMAGE_PLACEHOLDER}'")
    return out


def validate_and_normalize(
    ds: datasets.Dataset | list[dict[str, Any]], source: str, system_prompt: str | None, require_scores: bool, report: DropReport,
    image_root: str | Path | None = None,
) -> datasets.Dataset:
    """Check every row of one source; raise on the first ``MAX_REPORTED_ERRORS`` problems."""
    root = resolve_image_root(image_root)
    if root is not None and not root.is_dir():
        raise DataValidationError(f"{source}, key 'image_root': no such folder {image_root}")
    if isinstance(ds, datasets.Dataset):
        columns = ds.column_names
        if "prompt" not in columns and "instruction" in columns:
            columns = columns + ["prompt"]
        missing = [c for c in REQUIRED_TEXT_FIELDS + (SCORE_FIELDS if require_scores else ()) if c not in columns]
        if missing:
            raise DataValidationError(
                f"{source}: missing field(s) {', '.join(missing)} (columns present: {', '.join(columns)})"
            )
    rows, errors = [], []
    # 1-based: a .jsonl file's line numbers, else the row's position
    numbers = getattr(ds, "numbers", None) or range(1, len(ds) + 1)
    for i, row in zip(numbers, ds):
        where = f"{source}, row {i}"
        try:
            norm = normalize_row(row, where, system_prompt, require_scores, root)
        except DataValidationError as err:
            errors.append(str(err))
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
            continue
        if norm["chosen"].strip() == norm["rejected"].strip():
            logger.warning("%s: chosen is identical to rejected; dropping the pair", where)
            report.add("chosen identical to rejected")
            continue
        rows.append({**norm, "source": source, "row": i})
    with_images = [r for r in rows if IMAGE_FIELD in r]
    if with_images and len(with_images) != len(rows):
        first = next(r for r in rows if IMAGE_FIELD not in r)
        errors.append(f"{source}, row {first['row']}, field '{IMAGE_FIELD}': missing, while {len(with_images)} other "
                      "row(s) of this source have images; text and image rows cannot share a source (every rank must "
                      "run the vision tower at every step)")
    if errors:
        more = " (stopped at the first %d)" % MAX_REPORTED_ERRORS if len(errors) >= MAX_REPORTED_ERRORS else ""
        raise DataValidationError(f"{len(errors)} bad row(s){more}:\n  " + "\n  ".join(errors))
    if not rows:
        raise DataValidationError(f"{source}: no usable rows")
    return datasets.Dataset.from_list(rows)


def _describe(spec: dict[str, Any]) -> str:
    extra = spec.get("data_files") or spec.get("name")
    return f"{spec.get('path')}" + (f" [{extra}]" if extra else "") + f" ({spec.get('split', 'train')})"


def load_mixture(
    mixture: list[dict[str, Any]], *, seed: int, system_prompt: str | None = None, require_scores: bool = True,
    report: DropReport | None = None,
) -> datasets.Dataset:
    """Load, validate and concatenate the sources, keeping ``fraction`` of each (shuffled with ``seed``)."""
    if not mixture:
        raise DataValidationError("dataset_mixture is empty")
    report = report if report is not None else DropReport()
    parts = []
    for spec in mixture:
        if not isinstance(spec, dict):
            raise DataValidationError(f"dataset_mixture entries must be mappings with a 'path', got {spec!r}")
        fraction = float(spec.get("fraction", 1.0))
        if not 0 < fraction <= 1:
            raise DataValidationError(f"{_describe(spec)}: fraction must be in (0, 1], got {fraction}")
        source = _describe(spec)
        ds = validate_and_normalize(load_source(spec), source, system_prompt, require_scores, report,
                                    image_root=spec.get("image_root"))
        if fraction < 1:
            ds = ds.shuffle(seed=seed).select(range(max(1, int(fraction * len(ds)))))
        logger.info("%s: %d pairs", source, len(ds))
        parts.append(ds)
    kinds = {IMAGE_FIELD in part.column_names for part in parts}
    if len(kinds) > 1:
        raise DataValidationError(
            "dataset_mixture mixes text sources with image sources: "
            + ", ".join(f"{_describe(spec)} ({'images' if IMAGE_FIELD in part.column_names else 'text'})"
                        for spec, part in zip(mixture, parts))
            + "; train them separately (every rank must run the vision tower at every step under ZeRO-3)"
        )
    return datasets.concatenate_datasets(parts).shuffle(seed=seed)


def split_eval(ds: datasets.Dataset, test_split_size: float | int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Carve an eval split when the data has none (``test_split_size`` 0 means no eval)."""
    if not test_split_size:
        return ds, None
    if test_split_size >= len(ds):
        raise DataValidationError(f"test_split_size={test_split_size} leaves no training rows out of {len(ds)}")
    parts = ds.train_test_split(test_size=test_split_size, seed=seed)
    return parts["train"], parts["test"]


def median_chosen_score(ds: datasets.Dataset) -> float:
    """The paper's tau_good: the median chosen score of the (training) pairs."""
    if len(ds) == 0:
        raise DataValidationError("tau_good: median needs training pairs, got none")
    return float(statistics.median(ds["score_chosen"]))
