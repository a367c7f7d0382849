"""`--set` parsing and overrides: literals only, typed, validated, unknown keys suggested."""

import pytest
from ftbench.config import apply_overrides, config_hash, parse_literal
from ftbench.objectives.factorized import FactorizedConfig
from ftbench.run.experiment import RunSpec, parse_sets, prepare


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


def test_declared_bounds_are_checked_centrally_with_messages_naming_the_option():
    from ftbench.datasets.synthetic import SyntheticConfig
    from ftbench.train.loop import TrainConfig

    cases = [
        (TrainConfig(lr=-1.0), "train option 'lr' must be positive, got -1.0"),
        (TrainConfig(steps=0), "train option 'steps' must be at least 1, got 0"),
        (TrainConfig(warmup_fraction=1.0), r"train option 'warmup_fraction' must be in \[0, 1\), got 1.0"),
        (SyntheticConfig(split_seed=-2), "dataset option 'split_seed' must be a non-negative integer, got -2"),
        (SyntheticConfig(aux_informativeness=1.5), r"dataset option 'aux_informativeness' must be in \[0, 1\], got 1.5"),
        (SyntheticConfig(new_attribute_rate="x"), r"'new_attribute_rate' must be a number \(in \[0, 1\]\), got 'x'"),
        (SyntheticConfig(split_seed=True), "'split_seed' must be a number"),  # a bool is no integer here
        (FactorizedConfig(primary_weight=0.0), r"objective option 'primary_weight' must be in \(0, 1\], got 0.0"),
        (FactorizedConfig(aux_samples=-1), "objective option 'aux_samples' must be a non-negative integer, got -1"),
    ]
    for config, message in cases:
        with pytest.raises(ValueError, match=message):
            config.validate()
    # through --set the section the user named is in the message
    with pytest.raises(ValueError, match="full_ot option 'eps' must be positive, got 0.0"):
        from ftbench.objectives import OBJECTIVES

        apply_overrides(OBJECTIVES.get("full_ot").Config(), {"eps": 0}, "full_ot")
    # the bounds themselves are inclusive or exclusive as declared
    assert apply_overrides(TrainConfig(), {"warmup_fraction": 0, "eval_every": 0, "grad_clip": 0}, "train").eval_every == 0
    assert apply_overrides(FactorizedConfig(), {"primary_weight": 1}, "objective").primary_weight == 1.0


def test_bounds_are_metadata_outside_the_config_hash_and_defaults_must_satisfy_them():
    import dataclasses

    from ftbench.config import Bounds, describe, option, to_jsonable

    plain = dataclasses.make_dataclass("C", [("k", int, option(3, "k"))])
    bounded = dataclasses.make_dataclass("C", [("k", int, option(3, "k", ge=1))])
    assert config_hash(to_jsonable(plain())) == config_hash(to_jsonable(bounded()))
    assert describe(bounded)[0]["bounds"] == Bounds(ge=1, integer=True) and describe(plain)[0]["bounds"] is None
    with pytest.raises(ValueError, match="default 0 is not at least 1"):
        option(0, "k", ge=1)
    from ftbench.config import Search

    with pytest.raises(ValueError, match=r"search range \[0, 2\] int reaches outside the bounds \(at least 1\)"):
        option(1, "k", ge=1, search=Search(0, 2, "int"))
    with pytest.raises(ValueError, match="at most one of ge/gt"):
        Bounds(ge=0, gt=0)
    with pytest.raises(ValueError, match="lower bound 1 must lie below the upper bound 0"):
        Bounds(ge=1, le=0)
    assert [
        Bounds(gt=0).describe(),
        Bounds(ge=2).describe(),
        Bounds(ge=0).describe(),
        Bounds(gt=0, le=1).describe(),
        Bounds(lt=5).describe(),
    ] == ["positive", "at least 2", ">= 0", "in (0, 1]", "< 5"]
