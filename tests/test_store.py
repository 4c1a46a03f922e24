"""Tests of suite.store: atomic writes and the resumable, version-guarded store."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from suite import store as store_mod
from suite.errors import SuiteError
from suite.store import (
    CASE_KEY_COLUMN,
    ResultStore,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    case_key,
)

VERSION = "v1"


def rows(width: int, n_seeds: int = 2) -> pd.DataFrame:
    """Result rows of one case: one per seed."""
    return pd.DataFrame(
        {
            "arch": "mlp",
            "width": width,
            "seed": np.arange(n_seeds),
            "value": 1.0 / np.sqrt(width) * (1.0 + 0.01 * np.arange(n_seeds)),
        }
    )


# -- atomic writes ---------------------------------------------------------------------


def test_atomic_write_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "hello\n")
    assert target.read_text() == "hello\n"
    atomic_write_bytes(target, b"bye")
    assert target.read_bytes() == b"bye"
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_write_keeps_existing_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "new file")
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o600)
    atomic_write_text(target, "rewrite")
    assert target.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_old_content_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError(f"simulated {failing} failure")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_text(target, "new content that never lands")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_interrupt_mid_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_failing_serializer_leaves_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    atomic_write_json(target, {"a": 1})
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular"):
        atomic_write_json(target, circular)
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["data.json"]


def test_target_is_old_until_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    real_replace = os.replace
    seen: dict[str, str] = {}

    def checking_replace(src: str, dst: Path) -> None:
        # Everything is on disk in the temp file; the target is still untouched.
        seen["target"] = Path(dst).read_text()
        seen["temp"] = Path(src).read_text()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", checking_replace)
    atomic_write_text(target, "new")
    assert seen == {"target": "old", "temp": "new"}
    assert target.read_text() == "new"


def test_concurrent_reader_never_sees_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    # Large enough that a non-atomic write would be observable half-done.
    versions = [bytes([i]) * (1 << 20) for i in range(2)]
    atomic_write_bytes(target, versions[0])
    stop = threading.Event()
    bad: list[int] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            data = target.read_bytes()
            reads += 1
            if data not in versions:
                bad.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            atomic_write_bytes(target, versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert reads > 0
    assert os.listdir(tmp_path) == ["big.bin"]


def test_atomic_write_csv_roundtrip(tmp_path: Path) -> None:
    df = rows(64, n_seeds=3)
    atomic_write_csv(tmp_path / "r.csv", df)
    back = pd.read_csv(tmp_path / "r.csv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_json_handles_numpy_and_paths(tmp_path: Path) -> None:
    obj = {
        "f32": np.float32(0.5),
        "f64": np.float64(1.25),
        "i64": np.int64(7),
        "flag": np.bool_(True),
        "array": np.arange(3),
        "path": Path("/tmp/x"),
        "tags": {"b", "a"},
    }
    target = tmp_path / "meta.json"
    atomic_write_json(target, obj)
    text = target.read_text()
    assert text.endswith("}\n")
    assert text.index('"array"') < text.index('"f32"')  # keys sorted
    assert json.loads(text) == {
        "f32": 0.5,
        "f64": 1.25,
        "i64": 7,
        "flag": True,
        "array": [0, 1, 2],
        "path": "/tmp/x",
        "tags": ["a", "b"],
    }


# -- case_key --------------------------------------------------------------------------


def test_case_key_is_stable_and_sensitive() -> None:
    config = {"arch": "mlp", "depth": 2, "width": 512, "seed": 3, "opts": {"b": 1, "a": 2}}
    reordered = OrderedDict(reversed(list(config.items())))
    reordered["opts"] = {"a": 2, "b": 1}
    key = case_key(config)
    assert len(key) == 16
    assert all(c in "0123456789abcdef" for c in key)
    assert case_key(reordered) == key
    assert case_key({**config, "width": np.int64(512)}) == key
    assert ResultStore.case_key(config) == key
    assert case_key({**config, "seed": 4}) != key
    assert case_key({**config, "opts": {"b": 1, "a": 3}}) != key
    with pytest.raises(SuiteError, match="mapping"):
        case_key([("a", 1)])  # type: ignore[arg-type]


# -- ResultStore -----------------------------------------------------------------------


def test_new_store_is_empty_and_writes_nothing(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "out", "conv", version=VERSION)
    assert store.done_keys() == set()
    assert len(store.load()) == 0
    assert CASE_KEY_COLUMN in store.load().columns
    assert not (tmp_path / "out").exists()


def test_resume(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, "conv", version=VERSION)
    store.add("mlp-w0064-aaaa", rows(64))
    store.add("mlp-w0128-bbbb", rows(128))
    assert sorted(os.listdir(tmp_path)) == ["conv.csv", "conv.json"]

    reopened = ResultStore(tmp_path, "conv", version=VERSION)
    assert reopened.done_keys() == {"mlp-w0064-aaaa", "mlp-w0128-bbbb"}
    reopened.add("mlp-w0256-cccc", rows(256))

    final = ResultStore(tmp_path, "conv", version=VERSION).load()
    assert list(final.columns) == [CASE_KEY_COLUMN, "arch", "width", "seed", "value"]
    assert final.groupby(CASE_KEY_COLUMN)["width"].first().to_dict() == {
        "mlp-w0064-aaaa": 64,
        "mlp-w0128-bbbb": 128,
        "mlp-w0256-cccc": 256,
    }
    assert len(final) == 6
    expected = pd.concat([rows(64), rows(128), rows(256)], ignore_index=True)
    pd.testing.assert_frame_equal(final.drop(columns=[CASE_KEY_COLUMN]), expected)


def test_digit_only_keys_stay_strings(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, "conv", version=VERSION)
    store.add("0123", rows(64))
    assert ResultStore(tmp_path, "conv", version=VERSION).done_keys() == {"0123"}


def test_add_rejects_duplicates_and_empty_cases(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, "conv", version=VERSION)
    store.add("k1", rows(64))
    with pytest.raises(SuiteError, match="already stored"):
        store.add("k1", rows(64))
    with pytest.raises(SuiteError, match="no rows"):
        store.add("k2", rows(64).iloc[:0])
    with pytest.raises(SuiteError, match="case_key"):
        store.add("k3", rows(64).assign(case_key="other"))
    assert store.done_keys() == {"k1"}


def test_failed_add_keeps_previous_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultStore(tmp_path, "conv", version=VERSION)
    store.add("k1", rows(64))

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.add("k2", rows(128))
    monkeypatch.undo()
    assert store.done_keys() == {"k1"}
    assert ResultStore(tmp_path, "conv", version=VERSION).done_keys() == {"k1"}


def test_metadata(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, "conv", version=VERSION)
    store.write_metadata({"backend": "cpu", "wall_time_s": np.float64(1.5)})
    store.write_metadata({"wall_time_s": 2.0, "git_commit": "abc"})
    meta = json.loads((tmp_path / "conv.json").read_text())
    assert meta == {
        "experiment": "conv",
        "version": VERSION,
        "backend": "cpu",
        "wall_time_s": 2.0,
        "git_commit": "abc",
    }
    assert ResultStore(tmp_path, "conv", version=VERSION).metadata == meta
    with pytest.raises(SuiteError, match="version"):
        store.write_metadata({"version": "v2"})


def test_version_mismatch_raises(tmp_path: Path) -> None:
    ResultStore(tmp_path, "conv", version="v1").add("k1", rows(64))
    with pytest.raises(SuiteError, match=r"'v1'.*'v2'") as info:
        ResultStore(tmp_path, "conv", version="v2")
    assert "--out" in str(info.value)


def test_csv_without_sidecar_raises(tmp_path: Path) -> None:
    ResultStore(tmp_path, "conv", version=VERSION).add("k1", rows(64))
    (tmp_path / "conv.json").unlink()
    with pytest.raises(SuiteError, match="no metadata sidecar"):
        ResultStore(tmp_path, "conv", version=VERSION)


@pytest.mark.parametrize(
    "content",
    [
        b"",  # empty file
        b"case_key,value\nk1,1.0\nk2,2.0,3.0,4.0\n",  # ragged row
        b"\xff\xfe\x00garbage\x00",  # binary
        b"width,value\n64,1.0\n",  # no case_key column
        b"case_key,value\nk1,1.0\n,2.0\n",  # missing key
    ],
)
def test_corrupt_csv_raises(tmp_path: Path, content: bytes) -> None:
    ResultStore(tmp_path, "conv", version=VERSION).add("k1", rows(64))
    (tmp_path / "conv.csv").write_bytes(content)
    with pytest.raises(SuiteError, match=r"conv\.csv"):
        ResultStore(tmp_path, "conv", version=VERSION)


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"experiment": "conv"}'])
def test_corrupt_sidecar_raises(tmp_path: Path, content: str) -> None:
    (tmp_path / "conv.json").write_text(content)
    with pytest.raises(SuiteError, match=r"conv\.json"):
        ResultStore(tmp_path, "conv", version=VERSION)


def test_bad_store_arguments(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="path separators"):
        ResultStore(tmp_path, "a/b", version=VERSION)
    with pytest.raises(SuiteError, match="version"):
        ResultStore(tmp_path, "conv", version="")


def test_module_exports() -> None:
    for name in store_mod.__all__:
        assert hasattr(store_mod, name)


# --------------------------------------------------------------------------- remove, grid membership


def test_remove_takes_cases_out_atomically_and_returns_them(tmp_path):
    from suite.store import ResultStore

    store = ResultStore(tmp_path, "exp", version="1")
    for key, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        store.add(key, pd.DataFrame({"value": [value, value]}))
    removed = store.remove({"a", "c", "missing"})
    assert sorted(removed["case_key"].unique()) == ["a", "c"] and len(removed) == 4
    assert store.done_keys() == {"b"}
    reopened = ResultStore(tmp_path, "exp", version="1")
    assert reopened.done_keys() == {"b"} and reopened.load()["value"].tolist() == [2.0, 2.0]
    assert store.remove({"zzz"}).empty and store.done_keys() == {"b"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_grid_membership_joins_row_labels_and_the_sidecar_map():
    from suite.store import grid_membership

    frame = pd.DataFrame({"case_key": ["a", "a", "b", "c"], "grid": ["quick", "quick", "quick", "custom-x"]})
    meta = {"grids": {"custom-x": ["a", "c", "not-stored"], "quick": ["a", "b"]}}
    assert grid_membership(frame, meta) == {"quick": {"a", "b"}, "custom-x": {"a", "c"}}
    # stores written before the map existed are described by their grid column
    assert grid_membership(frame, {}) == {"quick": {"a", "b"}, "custom-x": {"c"}}
