"""Atomic file writes and a resumable, version-guarded results store.

Every file the suite writes goes through :func:`atomic_write_bytes`: the data
go to a temporary file in the target's directory, are flushed to disk, and the
temporary file is renamed over the target. A reader (or a crash) therefore sees
either the old file or the new one, never half of one.

:class:`ResultStore` keeps the tidy results of one experiment as
``<dir>/<experiment>.csv`` with a JSON sidecar ``<dir>/<experiment>.json``. It
persists each finished case at once, so an interrupted run loses at most the
case in progress and a rerun skips what is stored (see
:meth:`ResultStore.done_keys`). The sidecar records a version string; a store
written by another version is refused rather than silently mixed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite.errors import SuiteError

__all__ = [
    "CASE_KEY_COLUMN",
    "ResultStore",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "case_key",
    "grid_membership",
    "to_jsonable",
]

#: Column of the results CSV naming the case each row belongs to.
CASE_KEY_COLUMN = "case_key"

#: Hex digits of sha256 kept in a case key: 64 bits, so an accidental
#: collision among even millions of cases is vanishingly unlikely.
CASE_KEY_HEX_DIGITS = 16

#: Mode of newly created files (before the umask-free temp file's 0600 would
#: leave results unreadable to anyone else).
_NEW_FILE_MODE = 0o644


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry to disk so a completed rename survives a crash."""
    # Not possible on every platform or file system (e.g. Windows); a best effort.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or none of it.

    The bytes go to a temporary file in the same directory (a rename is only
    atomic within one file system), are flushed and fsynced, and then the
    temporary file replaces ``path`` with :func:`os.replace`. On any exception
    the temporary file is removed and ``path`` keeps its old content. Missing
    parent directories are created. An existing file keeps its permission bits;
    a new one gets mode 0644.

    Args:
        path: Target file.
        data: The complete new content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    # Not a with-block: the file must outlive its handle to be renamed.
    tmp = tempfile.NamedTemporaryFile(
        mode="wb", delete=False, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, target)
    except BaseException:
        # BaseException too: a Ctrl-C mid-write must not leave a stray temp file.
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_directory(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Args:
        path: Target file.
        text: The complete new content; newlines are written as given.
        encoding: Text encoding.
    """
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_csv(path: str | os.PathLike[str], df: pd.DataFrame) -> None:
    """Write ``df`` to ``path`` as CSV without the index, atomically.

    Args:
        path: Target file.
        df: The frame; its index is not written, so keep data in columns.
    """
    # Serialise fully before touching the file system, so a failing frame
    # leaves nothing behind.
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


def to_jsonable(obj: Any) -> Any:
    """Convert one object ``json`` cannot encode into one it can.

    Meant as the ``default`` hook of :func:`json.dumps`: numpy scalars become
    Python numbers, arrays lists, paths strings, dates ISO strings, sets sorted
    lists, enums their value, other mappings dicts, and anything else its
    ``str`` (metadata must never crash a run at the very end).

    Args:
        obj: An object :mod:`json` has no encoding for.

    Returns:
        A JSON-encodable stand-in.
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dt.date | dt.datetime | dt.time):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Set):
        try:
            return sorted(obj)
        except TypeError:
            return sorted(obj, key=repr)
    return str(obj)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path``, atomically.

    Args:
        path: Target file.
        obj: Anything :func:`to_jsonable` can reduce to JSON (numpy scalars and
            arrays, paths, dates included).
    """
    text = json.dumps(obj, indent=2, sort_keys=True, default=to_jsonable)
    atomic_write_text(path, text + "\n")


def case_key(config: Mapping[str, Any]) -> str:
    """Short, stable hash of a case's configuration.

    The hash is taken over canonical JSON (keys sorted, no whitespace, numpy
    scalars as Python numbers), so the key does not depend on dict order and
    changes whenever any value does. Note that ``1`` and ``1.0`` encode
    differently and so give different keys; keep config types stable.

    Args:
        config: Everything that determines the case's result.

    Returns:
        The first 16 hex digits of the sha256 of the canonical JSON.

    Raises:
        SuiteError: If ``config`` is not a mapping.
    """
    if not isinstance(config, Mapping):
        raise SuiteError(f"case_key needs a mapping of config values, got {type(config).__name__}")
    canonical = json.dumps(
        dict(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=to_jsonable
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:CASE_KEY_HEX_DIGITS]


class ResultStore:
    """Resumable tidy results of one experiment, guarded by a version string.

    Files: ``<directory>/<experiment>.csv`` (rows of every finished case, each
    with a ``case_key`` column) and ``<directory>/<experiment>.json`` (sidecar
    with ``experiment``, ``version`` and whatever metadata the caller adds).
    A store assumes it is the only writer of its files.

    Typical use::

        store = ResultStore(out_dir, "convergence", version=SCHEMA_VERSION)
        for config in cases:
            key = f"{case_id(config)}-{case_key(config)}"
            if key in store.done_keys():
                continue  # finished in an earlier, interrupted run
            store.add(key, run_case(config))

    Args:
        directory: Folder holding the files; created on the first write.
        experiment: Experiment name, used as the file stem.
        version: Schema/version string of the code producing the results.

    Raises:
        SuiteError: If the name or version is unusable; the sidecar records
            another version or experiment; the CSV exists without a sidecar;
            or either file cannot be read or parsed.
    """

    case_key = staticmethod(case_key)

    def __init__(self, directory: str | os.PathLike[str], experiment: str, *, version: str) -> None:
        if not isinstance(experiment, str) or not experiment.strip():
            raise SuiteError(f"experiment must be a non-empty name, got {experiment!r}")
        if "/" in experiment or "\\" in experiment or experiment in {".", ".."}:
            raise SuiteError(
                f"experiment {experiment!r} is used as a file name; drop path separators from it"
            )
        if not isinstance(version, str) or not version.strip():
            raise SuiteError(f"version must be a non-empty string, got {version!r}")
        self.directory = Path(directory)
        self.experiment = experiment
        self.version = version
        self.csv_path = self.directory / f"{experiment}.csv"
        self.meta_path = self.directory / f"{experiment}.json"
        self._metadata: dict[str, Any] = self._read_metadata()
        self._frame: pd.DataFrame = self._read_csv()
        self._keys: set[str] = set(self._frame[CASE_KEY_COLUMN]) if len(self._frame) else set()

    def __repr__(self) -> str:
        return (
            f"ResultStore({str(self.directory)!r}, {self.experiment!r}, "
            f"version={self.version!r}, cases={len(self._keys)})"
        )

    # -- reading ---------------------------------------------------------------

    def _fix_hint(self) -> str:
        """How to get past a store that cannot be used."""
        return (
            f"delete or move {self.csv_path} and {self.meta_path}, or pass another --out directory"
        )

    def _read_metadata(self) -> dict[str, Any]:
        """Read and check the sidecar; an empty base if neither file exists."""
        base: dict[str, Any] = {"experiment": self.experiment, "version": self.version}
        if not self.meta_path.exists():
            if self.csv_path.exists():
                raise SuiteError(
                    f"{self.csv_path} has no metadata sidecar {self.meta_path.name}, so the "
                    f"version that wrote it is unknown and its rows cannot be trusted; "
                    f"{self._fix_hint()}"
                )
            return base
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SuiteError(
                f"cannot read metadata {self.meta_path}: {exc}; {self._fix_hint()}"
            ) from exc
        if not isinstance(meta, dict) or "version" not in meta:
            raise SuiteError(
                f"metadata {self.meta_path} is not a JSON object with a 'version' key; "
                f"{self._fix_hint()}"
            )
        if meta["version"] != self.version:
            raise SuiteError(
                f"{self.meta_path} holds results of version {meta['version']!r}, but this "
                f"run is version {self.version!r}; results of different versions are never "
                f"mixed: {self._fix_hint()}"
            )
        if meta.get("experiment", self.experiment) != self.experiment:
            raise SuiteError(
                f"{self.meta_path} belongs to experiment {meta['experiment']!r}, not "
                f"{self.experiment!r}; {self._fix_hint()}"
            )
        return {**meta, **base}

    def _read_csv(self) -> pd.DataFrame:
        """Read and check the results CSV; an empty frame if there is none."""
        if not self.csv_path.exists():
            return pd.DataFrame({CASE_KEY_COLUMN: pd.Series([], dtype=object)})
        try:
            # Keys are hex and could be all digits; keep them strings.
            frame = pd.read_csv(self.csv_path, dtype={CASE_KEY_COLUMN: str})
        except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
            # ValueError covers pandas' EmptyDataError and bad dtype conversions.
            raise SuiteError(
                f"cannot read results {self.csv_path}: {type(exc).__name__}: {exc}; "
                f"{self._fix_hint()}"
            ) from exc
        if CASE_KEY_COLUMN not in frame.columns:
            raise SuiteError(
                f"results {self.csv_path} have no {CASE_KEY_COLUMN!r} column (columns: "
                f"{list(map(str, frame.columns))}), so it is not a results file of this "
                f"suite or it is corrupt; {self._fix_hint()}"
            )
        if frame[CASE_KEY_COLUMN].isna().any():
            n_missing = int(frame[CASE_KEY_COLUMN].isna().sum())
            raise SuiteError(
                f"{n_missing} rows of {self.csv_path} have no {CASE_KEY_COLUMN}; the file "
                f"is corrupt; {self._fix_hint()}"
            )
        return frame

    def done_keys(self) -> set[str]:
        """Case keys already stored (a copy; safe to keep while adding).

        Returns:
            Every ``case_key`` with rows in the store.
        """
        return set(self._keys)

    def load(self) -> pd.DataFrame:
        """All stored rows.

        Returns:
            A copy of the results, with the ``case_key`` column first; a frame
            with only that column and no rows if nothing is stored yet.
        """
        return self._frame.copy()

    @property
    def metadata(self) -> dict[str, Any]:
        """The sidecar's content as last read or written (a copy)."""
        return dict(self._metadata)

    # -- writing ---------------------------------------------------------------

    def write_metadata(self, meta: Mapping[str, Any]) -> None:
        """Merge ``meta`` into the sidecar and write it atomically.

        Keys given replace earlier ones (e.g. the wall time of the latest run);
        ``experiment`` and ``version`` always stay the store's own.

        Args:
            meta: Metadata such as the config, library versions, backend, git
                commit and wall time; numpy scalars and paths are fine.

        Raises:
            SuiteError: If ``meta`` names another version or experiment.
        """
        for field in ("experiment", "version"):
            if field in meta and meta[field] != getattr(self, field):
                raise SuiteError(
                    f"metadata {field} {meta[field]!r} differs from the store's "
                    f"{getattr(self, field)!r}; open a store with that {field} instead"
                )
        merged = {**self._metadata, **meta, "experiment": self.experiment, "version": self.version}
        atomic_write_json(self.meta_path, merged)
        self._metadata = merged

    def add(self, key: str, rows: pd.DataFrame) -> None:
        """Store the rows of one finished case and persist them at once.

        The whole CSV is rewritten atomically (results are small), so after
        this returns the case survives any interruption, and before it returns
        the file still holds the previous cases intact. The sidecar is written
        first if it does not exist yet, so the CSV never lacks one.

        Args:
            key: The case's key, e.g. ``"mlp-d2-w0512-s3-" + case_key(config)``.
            rows: The case's rows; a ``case_key`` column is added (or must
                already equal ``key``).

        Raises:
            SuiteError: If the key is empty or already stored, ``rows`` is not a
                non-empty frame, or its ``case_key`` column disagrees with
                ``key``.
        """
        if not isinstance(key, str) or not key:
            raise SuiteError(f"case key must be a non-empty string, got {key!r}")
        if key in self._keys:
            raise SuiteError(
                f"case {key!r} is already stored in {self.csv_path}; skip cases in "
                "store.done_keys() instead of recomputing them"
            )
        if not isinstance(rows, pd.DataFrame):
            raise SuiteError(f"rows must be a pandas DataFrame, got {type(rows).__name__}")
        if len(rows) == 0:
            # A case without rows could never show up in done_keys().
            raise SuiteError(f"case {key!r} has no rows; a finished case must have results")
        if CASE_KEY_COLUMN in rows.columns and not (rows[CASE_KEY_COLUMN] == key).all():
            raise SuiteError(
                f"rows for case {key!r} carry other values in their {CASE_KEY_COLUMN!r} "
                "column; drop the column or make it match"
            )
        new = rows.drop(columns=[CASE_KEY_COLUMN], errors="ignore").reset_index(drop=True)
        new.insert(0, CASE_KEY_COLUMN, key)

        # Concatenating with an empty frame is skipped: pandas may warn about it.
        frame = pd.concat([self._frame, new], ignore_index=True) if len(self._frame) else new

        if not self.meta_path.exists():
            atomic_write_json(self.meta_path, self._metadata)
        atomic_write_csv(self.csv_path, frame)
        self._frame = frame
        self._keys.add(key)

    def remove(self, keys: Set[str]) -> pd.DataFrame:
        """Take the rows of cases ``keys`` out of the store and persist the rest at once.

        Used to set cases aside before recomputing them (``--fresh``); the caller saves the
        returned rows first (e.g. to an archive), so an interruption can leave a case in
        both places but never in neither.

        Args:
            keys: Case keys to remove; keys not stored are ignored.

        Returns:
            The removed rows (with their ``case_key`` column).
        """
        gone = self._frame[CASE_KEY_COLUMN].isin(set(keys))
        removed = self._frame[gone].reset_index(drop=True)
        if removed.empty:
            return removed
        kept = self._frame[~gone].reset_index(drop=True)
        atomic_write_csv(self.csv_path, kept)
        self._frame = kept
        self._keys = set(kept[CASE_KEY_COLUMN])
        return removed


def grid_membership(frame: pd.DataFrame, metadata: Mapping[str, Any]) -> dict[str, set[str]]:
    """Which stored cases belong to which grid: grid label -> case keys.

    A case computed once can belong to several grids (a custom grid that resumes a case the
    quick grid computed, or two partial runs of one grid). Each row's ``grid`` column names
    the grid that computed it; the sidecar's ``grids`` map (written by
    :func:`suite.runner.run_experiment`) adds every grid a run asked for the case under.
    Stores written before the map existed are described by their ``grid`` column alone.

    Args:
        frame: The store's rows (:meth:`ResultStore.load`).
        metadata: The store's sidecar (:attr:`ResultStore.metadata`).

    Returns:
        Grid label to the keys of its stored cases (keys of cases not stored are left out).
    """
    stored = set(frame[CASE_KEY_COLUMN]) if len(frame) else set()
    members: dict[str, set[str]] = {}
    if "grid" in frame.columns:
        for label, keys in frame.groupby("grid")[CASE_KEY_COLUMN]:
            members.setdefault(str(label), set()).update(keys)
    for label, keys in dict(metadata.get("grids") or {}).items():
        members.setdefault(str(label), set()).update(set(keys) & stored)
    return {label: keys for label, keys in members.items() if keys}
