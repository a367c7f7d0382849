"""Unknown plugin names get the closest registered names suggested, case aside: `-o CLIP` is told
`clip` (names stay exact, one spelling per plugin in result files, file names and studies)."""

import pytest
from ftbench.registry import Registry, UnknownNameError, suggest


def test_a_name_that_differs_only_in_case_gets_the_registered_spelling():
    message = suggest("CLIP", ["clip", "siglip", "factorized"], "objective")
    assert message.startswith("unknown objective 'CLIP'. Did you mean 'clip'? (names are case-sensitive)")
    assert "Did you mean 'clip'?" in suggest("Clip", ["clip", "siglip"], "objective")


def test_close_names_are_found_whatever_their_case():
    assert "Did you mean 'factorized'?" in suggest("FACTORISED", ["clip", "factorized"], "objective")
    assert "Did you mean 'grocery-store'?" in suggest("Grocery_Store", ["grocery-store", "synthetic"], "data set")
    assert "case-sensitive" not in suggest("factorised", ["clip", "factorized"], "objective")
    assert "Did you mean" not in suggest("zzz", ["clip", "factorized"], "objective")


def test_registry_get_is_exact_and_says_what_was_meant():
    registry: Registry[type] = Registry("objective")
    registry.register("clip")(type("Clip", (), {}))
    assert registry.get("clip").__name__ == "Clip"
    with pytest.raises(UnknownNameError, match=r"unknown objective 'CLIP'. Did you mean 'clip'\?"):
        registry.get("CLIP")


def test_the_registered_name_is_the_plugins_one_name_attribute():
    from ftbench.datasets import DATASETS
    from ftbench.objectives import OBJECTIVES

    registry: Registry[type] = Registry("data set")

    class Plugin:
        name = "base"

    Toy = registry.register("toy")(type("Toy", (Plugin,), {}))  # an inherited name is replaced
    assert Toy.name == "toy" and Plugin.name == "base" and not hasattr(Toy, "registered_name")
    assert registry.register("named")(type("Named", (), {"name": "named"})).name == "named"
    with pytest.raises(ValueError, match="data set 'Other' names itself 'other' but is registered as 'toy2'"):
        registry.register("toy2")(type("Other", (), {"name": "other"}))
    assert "toy2" not in registry
    for plugins in (DATASETS, OBJECTIVES):  # what messages and result files read
        assert all(plugins.get(name).name == name for name in plugins)
