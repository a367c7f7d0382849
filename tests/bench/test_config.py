"""`--set` parsing and overrides: literals only, typed, validated, unknown keys suggested."""

import pytest

from ftbench.config import apply_overrides, config_hash, parse_literal
from ftbench.run.experiment import RunSpec, parse_sets, prepare, route_sets
from ftbench.objectives.factorized import FactorizedConfig


def test_values_are_literals_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    text = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    assert parse_literal(text) == text  # kept as a plain string
    assert not marker.exists()
    assert parse_literal("0.7") == 0.7 and parse_literal("(1, 10)") == (1, 10) and parse_literal("abc") == "abc"


def test_overrides_are_type_checked_and_validated():
    cfg = apply_overrides(FactorizedConfig(), {"aux_samples": 3, "primary_weight": 1}, "objective")
    assert cfg.aux_samples == 3 and cfg.primary_weight == 1.0
    with pytest.raises(ValueError, match="aux_samples.*integer"):
        apply_overrides(FactorizedConfig(), {"aux_samples": 1.5}, "objective")
    with pytest.raises(ValueError, match="primary_weight"):
        apply_overrides(FactorizedConfig(), {"primary_weight": 1.5}, "objective")
    with pytest.raises(KeyError, match="aux_samples"):
        apply_overrides(FactorizedConfig(), {"aux_sample": 2}, "objective")


def test_bare_keys_route_to_their_section_and_sections_are_explicit():
    prepared = prepare(RunSpec("factorized", sets=["aux_samples=2", "dataset.items=123", "train.lr=0.01"]))
    assert prepared.configs["objective"].aux_samples == 2
    assert prepared.configs["dataset"].items == 123
    assert prepared.configs["train"].lr == 0.01
    with pytest.raises(ValueError, match="option section"):
        parse_sets(["trian.lr=1"])


def test_config_hash_is_stable_and_sensitive():
    a = prepare(RunSpec("factorized", sets=["aux_samples=2"])).config_hash
    b = prepare(RunSpec("factorized", sets=["aux_samples=2"])).config_hash
    c = prepare(RunSpec("factorized", sets=["aux_samples=3"])).config_hash
    d = prepare(RunSpec("factorized", sets=["aux_samples=2"], device="cpu")).config_hash
    assert a == b == d and a != c  # the device is recorded but is not part of the run's identity
    assert config_hash({"b": 1, "a": 2}) == config_hash({"a": 2, "b": 1})
