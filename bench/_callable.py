"""Subpackages that can be called: `ftbench.run(...)` runs an experiment while `ftbench.run` stays
the run stage's subpackage (`import ftbench.run.experiment`, `from ftbench.run import sweep`).

A package attribute cannot be both: the import system sets `ftbench.run` to the subpackage the
first time any `ftbench.run.*` module loads, replacing a function of that name. So the subpackage
itself is made callable, by giving its module object a ModuleType subclass with `__call__` (the
documented way to customise a module's attribute behaviour: `module.__class__` assignment).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types


class CallableModule(types.ModuleType):
    """A module whose call runs `ftbench.api.<name>` (the module's `_api_function`)."""

    _api_function: str

    def _target(self):
        return getattr(importlib.import_module("ftbench.api"), self._api_function)

    def __call__(self, *args, **kwargs):
        return self._target()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:  # inspect.signature / IDEs / help on the call
        return inspect.signature(self._target())


def make_callable(module_name: str, api_function: str) -> None:
    """Make module `module_name` (already in sys.modules) call `ftbench.api.<api_function>`."""
    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module._api_function = api_function  # type: ignore[attr-defined]  # read by CallableModule, its class now
