"""An on-disk cache of precomputed reference log-probs (``precompute_ref_log_probs``).

The reference model is frozen, so its chosen/rejected log-probs for a tokenised dataset
never change: computing them once lets every later epoch, run and sweep point train with
no reference model at all. A cache file holds, per pair, the summed completion log-prob
of the chosen and rejected answers and their completion-token counts.

A file is used only when everything it depends on is the same. Its name is the SHA-256
of a key made of

* the reference model: its name, plus a content hash of a local folder's weight and
  config files, the hub revision it was loaded at, or the toy builder's seed; and the
  dtype it runs in;
* the tokenizer (its full serialised vocabulary and rules) and the chat template;
* the tokenised dataset itself (a hash of every prompt/chosen/rejected token id, and of
  the unlabelled-id counts where any is not 0, which also pins the data files, mixture,
  seed and split), ``max_length``,
  ``max_prompt_length``, ``apply_chat_template`` and the truncation rule;
* for image pairs only (:mod:`.multimodal`), what the forward sees beyond the token ids: the
  SHA-256 of each pair's image files, in order (their bytes, not their paths: the same images
  under another ``image_root`` are the same pairs; each distinct file read once, in blocks), and
  the image processor's settings (its class and whole config: resizing bounds, patch and merge
  size, resampling, rescaling, normalisation). Text keys hold neither, so they are what they
  were before image pairs could be cached;
* this file format's version.

Beside each such file, the same values are kept *per example*: a file in
``rows-<key without the dataset>/`` holding each pair's content hash (its prompt, chosen and
rejected token ids, and the hashes of its images) with its values. A dataset with no
whole-dataset file of its own is served from these when every one of its pairs is found there,
whatever their order, split or subset: another seed's shuffle and split of the same data, or
another point of a sweep, pays no reference pass.

The key is also stored inside the file and compared on load. A file that cannot be
parsed, whose checksum or key does not match, or whose contents do not fit the dataset
is reported and rebuilt, never read. Files are written by the package's atomic writer
(:mod:`alignment_unidpo.base.files`), so a reader sees a complete file or none; temporary
files of writers that are gone (a killed run) are removed whenever the cache is read or written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ..base.files import atomic_path, remove_stale_temp_files, write_text_atomic
from ..base.pinned_files import sha256_file
from .data import IMAGE_FIELD
from .tokenization import REFERENCE_COLUMNS, UNLABELLED_COLUMNS
from .toy import TOY_SEED, is_toy

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
TRUNCATION_RULE = "prompt-left-to-max_prompt_length-then-answers-right"  # tokenization.truncate_pair
COUNT_COLUMNS = ("ref_chosen_tokens", "ref_rejected_tokens")
TOKEN_COLUMNS = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".model", ".txt")


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def feature_columns(ds: datasets.Dataset) -> list[str]:
    """The columns the collator reads the sequences and labels from: the token columns, and
    the unlabelled-id counts (tokenization.UNLABELLED_COLUMNS) where the dataset has them."""
    return list(TOKEN_COLUMNS) + [c for c in UNLABELLED_COLUMNS if c in ds.column_names]


def _token_table(ds: datasets.Dataset):
    """The feature columns as an Arrow table, row order and selection applied."""
    return ds.select_columns(feature_columns(ds)).with_format("arrow")[:]


def _unlabelled(table, column: str) -> np.ndarray:
    if column not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    return np.asarray(table.column(column).fill_null(0)).astype(np.int64)


def image_digests(ds: datasets.Dataset) -> list[list[str]] | None:
    """The SHA-256 of each pair's image files, in its order (None for text pairs). Each distinct
    file is read once, in blocks; the bytes are hashed, not the path."""
    if IMAGE_FIELD not in ds.column_names:
        return None
    known: dict[str, str] = {}
    return [[known[p] if p in known else known.setdefault(p, sha256_file(p)) for p in paths]
            for paths in ds[IMAGE_FIELD]]


def image_processor_settings(image_processor) -> dict[str, Any]:
    """What turns an image file into pixel values, for the key: the processor's class (its
    resizing backend) and its whole config (JSON, as saved with a model)."""
    return {"class": type(image_processor).__name__, "config": json.loads(image_processor.to_json_string())}


def dataset_fingerprint(ds: datasets.Dataset, images: list[list[str]] | None = None) -> str:
    """SHA-256 of every prompt/chosen/rejected token id, row by row, and of the unlabelled-id
    counts when any is not 0 (so datasets whose splits all agree keep their fingerprint); for
    image pairs also of their image hashes (``images``: :func:`image_digests`, computed when not given)."""
    images = image_digests(ds) if images is None else images
    digest = hashlib.sha256()
    table = _token_table(ds)
    for name in TOKEN_COLUMNS:
        column = table.column(name).combine_chunks()
        digest.update(name.encode())
        digest.update(np.asarray(column.offsets).astype(np.int64).tobytes())
        digest.update(np.asarray(column.values).astype(np.int64).tobytes())
    for name in UNLABELLED_COLUMNS:
        counts = _unlabelled(table, name)
        if counts.any():
            digest.update(name.encode())
            digest.update(counts.tobytes())
    if images is not None:
        digest.update(IMAGE_FIELD.encode())
        digest.update(json.dumps(images).encode())
    return digest.hexdigest()


def row_hashes(ds: datasets.Dataset, images: list[list[str]] | None = None) -> np.ndarray:
    """SHA-256 of each pair's prompt/chosen/rejected token ids and unlabelled-id counts, and of
    its image hashes for image pairs (as in :func:`dataset_fingerprint`): ``[rows, 32]`` uint8."""
    images = image_digests(ds) if images is None else images
    table = _token_table(ds)
    columns = []
    for name in TOKEN_COLUMNS:
        column = table.column(name).combine_chunks()
        columns.append((np.asarray(column.offsets).astype(np.int64), np.asarray(column.values).astype(np.int64)))
    unlabelled = np.stack([_unlabelled(table, name) for name in UNLABELLED_COLUMNS], axis=1)
    out = np.empty((len(ds), 32), dtype=np.uint8)
    for i in range(len(ds)):
        digest = hashlib.sha256()
        for offsets, values in columns:
            digest.update(values[offsets[i]:offsets[i + 1]].tobytes())
            digest.update(b"|")
        digest.update(unlabelled[i].tobytes())
        if images is not None:
            digest.update(json.dumps(images[i]).encode())
        out[i] = np.frombuffer(digest.digest(), dtype=np.uint8)
    return out


def expected_token_counts(ds: datasets.Dataset) -> dict[str, np.ndarray]:
    """Completion tokens each answer contributes: its ids but the unlabelled ones (the end of
    its own prompt); with no prompt at all its first token, which nothing precedes."""
    table = _token_table(ds)
    has_prompt = np.asarray(pc.list_value_length(table.column("prompt_input_ids"))) > 0
    counts = {}
    for column, answer, unlabelled in zip(COUNT_COLUMNS, ("chosen_input_ids", "rejected_input_ids"),
                                          UNLABELLED_COLUMNS):
        lengths = np.asarray(pc.list_value_length(table.column(answer))).astype(np.int64)
        skipped = _unlabelled(table, unlabelled)
        first_unpredicted = (~has_prompt) & (skipped == 0)
        counts[column] = np.maximum(lengths - skipped - first_unpredicted, 0)
    return counts


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256((body + "\0" + str(tokenizer.chat_template)).encode()).hexdigest()


def folder_content_hash(folder: Path, memo_dir: Path | None = None) -> str:
    """SHA-256 over the weight, config and tokenizer files of a model folder.

    Hashing an 8B checkpoint reads 16 GB, so results are remembered in ``memo_dir`` by
    (path, size, modification time) of every file; a changed file is hashed again.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    stamp = _sha256_json([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    memo_path = memo_dir / "folder_hashes.json" if memo_dir else None
    memo = {}
    if memo_path and memo_path.exists():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
    if stamp in memo:
        return memo[stamp]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    memo[stamp] = digest.hexdigest()
    if memo_path:
        write_text_atomic(memo_path, json.dumps(memo, indent=1))
    return memo[stamp]


def reference_identity(name: str, revision: str | None, dtype: str, memo_dir: Path | None, model=None) -> str | None:
    """What pins the reference model's weights, or None when that is not known before loading.

    Toy models are fixed by their name and seed, local folders by their content, hub
    models by the commit they resolve to (known once ``model`` is loaded, or from the
    local hub cache).
    """
    if is_toy(name):
        weights = f"toy-seed-{TOY_SEED}"
    elif Path(name).is_dir():
        weights = "sha256:" + folder_content_hash(Path(name), memo_dir)
    else:
        commit = getattr(getattr(model, "config", None), "_commit_hash", None) if model is not None else None
        if commit is None:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(name, "config.json", revision=revision)
            commit = Path(found).parent.name if isinstance(found, str) else None
        if commit is None:
            return None
        weights = "commit:" + commit
    return _sha256_json({"name": name, "weights": weights, "dtype": dtype})


class ReferenceLogpsCache:
    """Reads and writes precomputed reference log-probs for tokenised datasets.

    ``key_fields`` are everything but the dataset (see the module docstring), with the image
    processor's settings (``image_processor``: :func:`image_processor_settings`) for image pairs;
    each dataset adds its own fingerprint. ``directory=None`` keeps nothing on disk.
    """

    def __init__(self, directory: str | Path | None, key_fields: dict[str, Any]):
        self.directory = Path(directory).expanduser() if directory else None
        self.key_fields = {"format": CACHE_FORMAT, "truncation": TRUNCATION_RULE, **key_fields}

    def key(self, ds: datasets.Dataset, images: list[list[str]] | None = None) -> dict[str, Any]:
        """The whole key of ``ds`` (``images``: its :func:`image_digests`, computed when not given)."""
        images = image_digests(ds) if images is None else images
        if images is not None and "image_processor" not in self.key_fields:
            raise ValueError("image pairs need the image processor's settings in the reference cache key")
        return {**self.key_fields, "dataset": dataset_fingerprint(ds, images), "rows": len(ds)}

    def path(self, ds: datasets.Dataset) -> Path | None:
        return self._file(self.key(ds))

    def _file(self, key: dict[str, Any]) -> Path | None:
        """The whole-dataset file of ``key`` (:meth:`key`)."""
        return self.directory / f"{_sha256_json(key)}.safetensors" if self.directory else None

    def rows_dir(self) -> Path | None:
        """The per-example files of this key (every dataset)."""
        return self.directory / f"rows-{_sha256_json(self.key_fields)[:32]}" if self.directory else None

    def load(self, ds: datasets.Dataset) -> dict[str, np.ndarray] | None:
        """The cached values for ``ds``, or None when absent or unusable (the reason is logged):
        its own whole-dataset file, else every pair found among the per-example files."""
        if self.directory is None:
            return None
        images = image_digests(ds)  # read the image files once for this look-up
        key = self.key(ds, images)
        path = self._file(key)
        remove_stale_temp_files(self.directory)
        if not path.exists():
            return self._load_rows(ds, images)
        problem = None
        try:
            with safe_open(path, framework="np") as handle:
                metadata = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except (SafetensorError, OSError, ValueError) as err:
            tensors, metadata, problem = {}, {}, f"unreadable ({err})"
        if problem is None:
            problem = self._check(ds, tensors, metadata, key)
        if problem:
            logger.warning("reference log-prob cache %s is %s; it will be rebuilt", path, problem)
            return None
        logger.info("reference log-probs for %d pairs read from %s", len(ds), path)
        return tensors

    def _load_rows(self, ds: datasets.Dataset, images: list[list[str]] | None) -> dict[str, np.ndarray] | None:
        rows_dir = self.rows_dir()
        if rows_dir is None or not rows_dir.is_dir() or len(ds) == 0:
            return None
        remove_stale_temp_files(rows_dir)
        wanted = [h.tobytes() for h in row_hashes(ds, images)]
        need = set(wanted)
        found: dict[bytes, tuple[dict[str, np.ndarray], int]] = {}
        key = json.dumps(self.key_fields, sort_keys=True)
        for file in sorted(rows_dir.glob("*.safetensors")):
            try:
                with safe_open(file, framework="np") as handle:
                    metadata = handle.metadata() or {}
                    tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            except (SafetensorError, OSError, ValueError) as err:
                logger.warning("per-example reference log-prob file %s is unreadable (%s); not read", file, err)
                continue
            if metadata.get("key") != key or metadata.get("checksum") != _checksum(tensors) or \
                    set(tensors) != {"row_hash", *REFERENCE_COLUMNS, *COUNT_COLUMNS}:
                logger.warning("per-example reference log-prob file %s is for another key or corrupt; not read", file)
                continue
            for i, h in enumerate(tensors["row_hash"]):
                b = h.tobytes()
                if b in need and b not in found:
                    found[b] = (tensors, i)
            if len(found) == len(need):
                break
        if len(found) < len(need):
            return None
        values = {c: np.array([found[b][0][c][found[b][1]] for b in wanted]) for c in REFERENCE_COLUMNS + COUNT_COLUMNS}
        counts = expected_token_counts(ds)
        if not all(np.isfinite(values[c]).all() for c in REFERENCE_COLUMNS) or \
                not all(np.array_equal(values[c], counts[c]) for c in COUNT_COLUMNS):
            logger.warning("per-example reference log-probs in %s are inconsistent with the dataset; recomputed", rows_dir)
            return None
        logger.info("reference log-probs for %d pairs read per example from %s", len(ds), rows_dir)
        return values

    def _check(self, ds: datasets.Dataset, tensors: dict[str, np.ndarray], metadata: dict[str, str],
               key: dict[str, Any]) -> str | None:
        if metadata.get("key") != json.dumps(key, sort_keys=True):
            return "for a different key"
        if set(tensors) != set(REFERENCE_COLUMNS + COUNT_COLUMNS):
            return f"missing columns (has {sorted(tensors)})"
        if metadata.get("checksum") != _checksum(tensors):
            return "corrupt (checksum mismatch)"
        if any(t.shape != (len(ds),) for t in tensors.values()):
            return f"the wrong length for {len(ds)} pairs"
        if not all(np.isfinite(tensors[c]).all() for c in REFERENCE_COLUMNS):
            return "holding non-finite values"
        for column, expected in expected_token_counts(ds).items():
            if not np.array_equal(tensors[column], expected):
                return f"inconsistent with the dataset ({column})"
        return None

    def save(self, ds: datasets.Dataset, values: dict[str, np.ndarray]) -> Path | None:
        if self.directory is None:
            return None
        images = image_digests(ds)  # read the image files once for this write
        key = self.key(ds, images)
        path = self._file(key)
        tensors = {k: np.ascontiguousarray(values[k]) for k in REFERENCE_COLUMNS + COUNT_COLUMNS}
        metadata = {"key": json.dumps(key, sort_keys=True), "checksum": _checksum(tensors)}
        with atomic_path(path) as tmp:  # also removes the leftovers of killed writes
            save_file(tensors, tmp, metadata=metadata)
        rows = {"row_hash": row_hashes(ds, images), **tensors}
        rows_dir = self.rows_dir()
        rows_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(rows_dir / path.name) as tmp:  # one file per dataset: writers never share one
            save_file(rows, tmp, metadata={"key": json.dumps(self.key_fields, sort_keys=True),
                                           "checksum": _checksum(rows)})
        logger.info("reference log-probs for %d pairs written to %s (and per example to %s)", len(ds), path, rows_dir)
        return path


def _checksum(tensors: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(str(tensors[name].dtype).encode())
        digest.update(np.ascontiguousarray(tensors[name]).tobytes())
    return digest.hexdigest()


def attach_reference_logps(ds: datasets.Dataset, values: dict[str, np.ndarray]) -> datasets.Dataset:
    """``ds`` with the per-pair reference log-prob sums as columns (read by the collator)."""
    for column in REFERENCE_COLUMNS:
        if column in ds.column_names:
            ds = ds.remove_columns(column)
        ds = ds.add_column(column, values[column].astype(np.float64).tolist())
    return ds
