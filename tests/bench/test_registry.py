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
