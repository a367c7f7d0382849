"""A non-finite loss or gradient stops training with a message naming the step, the objective and
the loss term, and no result file is written as if the run were valid.

Why: a NaN that slips into the parameters turns every later embedding into NaN, and exact
search over NaN scores returns an arbitrary ranking - a run that "completes" with meaningless
Recall@K. The guard in `training.Stepper.step` checks every loss term before the backward pass
and every gradient after it. These tests poison a real objective (`clip`) at a chosen step,
through the real command line on the tiny synthetic marketplace, and check the message, the exit
code and the absence of any result or temp file.
"""

from __future__ import annotations

import pytest
import torch
from ftbench.cli.app import app
from ftbench.objectives import OBJECTIVES
from typer.testing import CliRunner

TINY = [
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=400",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.val_gallery_size=200",
    "--steps",
    "6",
    "--batch-size",
    "32",
    "--quiet",
    "--device",
    "cpu",
]
runner = CliRunner()


def _poison(monkeypatch, at_call: int, how: str) -> None:
    """Make `clip`'s forward return a NaN loss term (`how="loss"`), or an extra term whose value is
    finite (0) but whose gradient is NaN (`how="gradient"`: d sqrt(x)/dx at 0 is infinite, times
    0), from its `at_call`-th call on."""
    cls = OBJECTIVES.get("clip")
    original = cls.forward
    calls = {"n": 0}

    def forward(self, batch):
        terms = original(self, batch)
        calls["n"] += 1
        if calls["n"] >= at_call:
            if how == "loss":
                terms["contrastive_loss"] = terms["contrastive_loss"] * float("nan")
            else:
                terms["poison_loss"] = torch.sqrt(batch.views.embeddings.sum() * 0.0)
        return terms

    monkeypatch.setattr(cls, "forward", forward)


def _no_files(folder) -> bool:
    return not [p for p in folder.iterdir() if p.suffix in (".json", ".tmp") or ".json." in p.name]


def test_nan_loss_names_step_objective_and_term_and_writes_nothing(tmp_path, monkeypatch):
    _poison(monkeypatch, at_call=3, how="loss")
    res = runner.invoke(app, ["run", "--objective", "clip", "--views", "2", "--out", str(tmp_path), *TINY])
    output = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "non-finite loss at step 3: objective 'clip', term 'contrastive_loss' = nan" in output
    assert "no result was written" in output and "Traceback" not in output
    assert _no_files(tmp_path)


def test_nan_gradient_names_step_objective_parameter_and_terms(tmp_path, monkeypatch):
    _poison(monkeypatch, at_call=2, how="gradient")
    res = runner.invoke(app, ["run", "--objective", "clip", "--views", "2", "--out", str(tmp_path), *TINY])
    output = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "non-finite gradient at step 2: objective 'clip', parameter 'towers." in output
    assert "poison_loss=0" in output and "contrastive_loss=" in output
    assert "no result was written" in output
    assert _no_files(tmp_path)


@pytest.mark.parametrize("how", ["loss", "gradient"])
def test_a_sweep_reports_the_run_as_failed_and_writes_no_result(tmp_path, monkeypatch, how):
    _poison(monkeypatch, at_call=1, how=how)
    res = runner.invoke(app, ["sweep", "-o", "clip", "--views", "2", "--seed", "0", "--out", str(tmp_path), *TINY])
    output = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert "0 ran, 0 skipped (result exists), 1 failed" in output
    assert f"failed: clip V=2 seed=0: NonFiniteError: non-finite {how} at step 1: objective 'clip'" in output
    assert _no_files(tmp_path)
