"""A small name -> plugin registry with helpful errors for unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def suggest(name: str, choices: list[str], what: str) -> str:
    """An error message for an unknown `name` among `choices`, naming the closest match. Names
    are compared without case, so `CLIP` gets `clip` suggested (names themselves stay exact: one
    spelling per plugin in result files, file names and studies)."""
    by_folded: dict[str, list[str]] = {}
    for choice in choices:
        by_folded.setdefault(choice.lower(), []).append(choice)
    close = by_folded.get(name.lower()) or [
        choice
        for folded in difflib.get_close_matches(name.lower(), list(by_folded), n=3, cutoff=0.4)
        for choice in by_folded[folded]
    ]
    hint = f" Did you mean {' or '.join(repr(c) for c in close[:3])}?" if close else ""
    if name.lower() in by_folded:
        hint += " (names are case-sensitive)"
    return f"unknown {what} {name!r}.{hint} Known: {', '.join(sorted(choices))}."


class Registry(Generic[T]):
    """Maps a name to a plugin class; `kind` names the plugin family in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Register a plugin under `name`, which becomes its `name` attribute (read by messages and
        result files); a class that spells its own `name` must spell the registered one."""

        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            own = vars(entry).get("name") if isinstance(entry, type) else None
            if own is not None and own != name:
                raise ValueError(
                    f"{self.kind} {getattr(entry, '__qualname__', entry)!r} names itself {own!r} but is registered as {name!r}"
                )
            self._entries[name] = entry
            try:
                entry.name = name  # type: ignore[attr-defined]  # a class plugin gets the name it is registered under
            except AttributeError:  # a plugin that is not a class (a function): nothing to name
                pass
            return entry

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(suggest(name, list(self._entries), self.kind))
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
