"""Loading data never runs code: no pickle anywhere data is read, `--set` values are literals,
and a pickled payload planted where data is expected is refused without being unpickled.

Why: benchmark inputs come from the internet (data sets, precomputed features, weights, archives)
and from shared folders (feature caches, result files). Unpickling any of them would run
whatever code the file carries. A source scan guards every future `torch.load` / `numpy.load`
call, and the runtime tests plant a payload whose unpickling would create a marker file and
check that the marker never appears. Archive extraction refusing escaping paths is tested in
test_fetch.py.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
from ftbench.features.backbones import content_hash, create_backbone
from ftbench.features.cache import FeatureCache
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for folder in ("bench", "datasets", "objectives") for p in (ROOT / folder).rglob("*.py"))
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _unsafe_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            found += [f"{where}: imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
            found.append(f"{where}: {func.id}()")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner, attr = func.value.id, func.attr
            if owner == "torch" and attr == "load":
                flag = _keyword(node, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and attr == "load":
                flag = _keyword(node, "allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    found.append(f"{where}: numpy.load without allow_pickle=False")
            if attr in ("read_pickle", "unsafe_load") or (owner == "yaml" and attr == "load"):
                found.append(f"{where}: {owner}.{attr}")
    return found


def test_no_source_file_can_unpickle_data():
    assert len(SOURCES) > 30  # the scan sees the package
    problems = [p for path in SOURCES for p in _unsafe_calls(path)]
    assert problems == []
    loads = [path for path in SOURCES if "np.load(" in path.read_text() or "torch.load(" in path.read_text()]
    assert loads, "the scan must see the loads it guards"


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mknod if hasattr(os, "mknod") else Path.touch, (str(self.marker),))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)


def test_a_pickled_cache_entry_is_re_encoded_not_unpickled(tmp_path):
    backbone = create_backbone("hash:8", "text")
    cache = FeatureCache(tmp_path / "cache")
    entry = cache.path(backbone, "item", content_hash("text", "red shampoo"))
    marker = tmp_path / "code-ran"
    _plant(entry, marker)
    feats = cache.encode(backbone, ["red shampoo"], "item")
    assert not marker.exists()
    assert cache.stats.encoded == 1 and cache.stats.hits == 0
    np.testing.assert_array_equal(feats[0], backbone.encode(["red shampoo"])[0])
    assert np.load(entry, allow_pickle=False).dtype == np.float32  # replaced by plain floats


def test_pickled_precomputed_features_are_refused_naming_the_file(tmp_path):
    folder = tmp_path / "pre"
    marker = tmp_path / "code-ran"
    _plant(folder / "features.npy", marker)
    (folder / "keys.txt").write_text(content_hash("text", "a") + "\n")
    with pytest.raises(ValueError, match=r"features.npy: not a readable float .npy array .*pickled Python objects are refused"):
        create_backbone(f"precomputed:{folder}", "text")
    assert not marker.exists()


@pytest.mark.parametrize(
    "value",
    ["__import__('pathlib').Path({marker!r}).touch()", "exec('open({marker!r}, \"w\")')", "[x for x in ().__class__.__mro__]"],
)
def test_set_values_are_parsed_as_literals_and_never_evaluated(tmp_path, value):
    from ftbench.cli.app import app

    marker = tmp_path / "code-ran"
    text = value.format(marker=str(marker))
    res = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "out"), "--device", "cpu", "--set", f"dataset.items={text}"])
    assert res.exit_code == 2 and "dataset option 'items': expected an integer" in " ".join(res.output.split())
    assert not marker.exists()
