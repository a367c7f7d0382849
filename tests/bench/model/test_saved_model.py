"""`--save-model` / `ftbench encode` / `ftbench.load_model`: a saved model re-embeds the run's data
bit for bit (the serving parameters of oat included), embeds other data sets of the same layout,
and refuses data it cannot embed with an error naming what differs."""

import json

import ftbench
import numpy as np
import pytest
from ftbench.cli.app import app
from typer.testing import CliRunner

TINY = {"dataset.items": 300, "dataset.interactions": 400, "train.eval_every": 5, "train.val_gallery_size": 200}
runner = CliRunner()


def _train(tmp_path, objective, **overrides):
    out = ftbench.run(
        objective=objective,
        views=4,
        seed=0,
        steps=10,
        batch_size=32,
        device="cpu",
        overrides={**TINY, **overrides},
        out=tmp_path / "results",
        save_embeddings=True,
        save_model=tmp_path / "model",
    )
    return out, next((tmp_path / "results").glob("*.embeddings"))


def _arrays(folder):
    return {
        name: np.load(folder / f"{name}.npy", allow_pickle=False)
        for name in ("item_embeddings", "item_ids", "query_embeddings", "query_ids")
    }


@pytest.mark.parametrize(
    "objective, overrides",
    [
        ("clip", {}),
        ("oat", {}),  # residuals, gates, LayerNorm, averaged plans, logit scale
        ("oat", {"tower.init": "residual", "dataset.image_dim": 320}),  # fitted skip paths (features wider than d)
    ],
)
def test_encode_reproduces_the_runs_embeddings_exactly(tmp_path, objective, overrides):
    out, saved_embeddings = _train(tmp_path, objective, **overrides)
    assert out.model_dir == tmp_path / "model"
    description = json.loads((tmp_path / "model" / "model.json").read_text())
    assert description["objective"] == objective and description["views"] == 4
    assert description["backbones"]["image"] == {"spec": None, "fingerprint": None}  # generated features
    if objective == "oat":
        assert {"gates", "delta_image", "delta_text", "norm.weight", "plans.average", "plans.ready", "log_logit_scale"} <= set(
            description["tensors"]["objective"]
        )
    res = runner.invoke(
        app,
        ["encode", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "encoded"), "--device", "cpu"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    expected, got = _arrays(saved_embeddings), _arrays(tmp_path / "encoded")
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)

    model = ftbench.load_model(tmp_path / "model")
    data = model.build_dataset()
    np.testing.assert_array_equal(model.embed_items(data), expected["item_embeddings"])
    np.testing.assert_array_equal(model.embed_queries(data, "test"), expected["query_embeddings"])
    # a batch of two: the matrix products' blocking differs from a full batch's, in the last bits only
    np.testing.assert_allclose(model.embed_items(data, np.array([7, 3])), expected["item_embeddings"][[7, 3]], rtol=0, atol=1e-6)


def test_a_model_embeds_another_data_set_of_its_layout_and_refuses_others(tmp_path):
    _train(tmp_path, "clip")
    model = ftbench.load_model(tmp_path / "model")
    other = model.build_dataset(overrides={"items": 120, "dataset.seed": 5})
    items = model.embed_items(other)
    assert items.shape == (120, 256)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    queries = model.embed_queries(other, "all")
    assert queries.shape == (len(other.queries.ids), 256)

    with pytest.raises(ValueError, match="view slots .* differ from the model's"):
        model.embed_items(model.build_dataset(overrides={"max_views": 6}))
    with pytest.raises(ValueError, match="feature dimensions .* differ"):
        model.embed_items(model.build_dataset(overrides={"text_dim": 32}))
    with pytest.raises(KeyError, match="only data set fields"):
        model.build_dataset(overrides={"train.steps": 3})

    res = runner.invoke(
        app, ["encode", "--model", str(tmp_path / "model"), "--set", "dataset.text_dim=32", "--out", str(tmp_path / "e")]
    )
    assert res.exit_code == 2 and "feature dimensions" in res.output and not (tmp_path / "e").exists()
    res = runner.invoke(
        app, ["encode", "--model", str(tmp_path / "model"), "--set", "train.lr=0.1", "--out", str(tmp_path / "e")]
    )
    assert res.exit_code == 2 and "data set fields only" in res.output
    res = runner.invoke(
        app,
        ["encode", "--model", str(tmp_path / "model"), "--queries", "none", "--set", "items=50", "--out", str(tmp_path / "e")],
    )
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "e" / "item_embeddings.npy").shape == (50, 256)
    assert not (tmp_path / "e" / "query_embeddings.npy").exists()


def test_per_item_parameters_embed_only_their_own_catalog(tmp_path):
    _train(tmp_path, "oat", **{"objective.anchor": "id"})
    model = ftbench.load_model(tmp_path / "model")
    assert model.embed_items(model.build_dataset()).shape == (300, 256)
    with pytest.raises(ValueError, match="per-item parameters"):
        model.embed_items(model.build_dataset(overrides={"items": 200}))


def test_bad_model_folders_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ftbench.load_model(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(FileNotFoundError, match="model.json missing"):
        ftbench.load_model(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text('{"format": "something else"}')
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not tensors")
    with pytest.raises(ValueError, match="not an ftbench model description"):
        ftbench.load_model(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text('{"format": "ftbench-model", "format_version": 1}')
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ftbench.load_model(tmp_path / "m")
    res = runner.invoke(app, ["encode", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "no such folder" in res.output

    # --save-model never replaces a folder of other files
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    res = runner.invoke(
        app,
        [
            "run",
            "--objective",
            "clip",
            "--save-model",
            str(tmp_path / "notes"),
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert res.exit_code == 2 and "not a saved model" in res.output
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
