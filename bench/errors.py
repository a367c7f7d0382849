"""Which exceptions are the user's bad input, to be shown as one line rather than a traceback.

A benchmark fed a malformed file must say which file, line and field is wrong and stop; it must
not bury that under a traceback, nor hide a genuine bug behind a one-line message. Every loader
raises its input errors as one of the types below with a message naming the file, line or field
and what was expected; the commands (`run`, `features`, `data fetch`) catch exactly these, print
the message and exit with code 2. Any other exception keeps its traceback: it is a bug to report.
"""

from __future__ import annotations

from .features.backbones import BackboneUnavailable


def input_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """The exception types that mean "the input is bad or missing": ValueError (a loader's
    message naming the file and line; bad option values; damaged archives), KeyError (an
    unknown key or a feature row missing from a precomputed table), OSError (a missing or
    unreadable file, a network failure), ImportError and `BackboneUnavailable` (an optional
    package or a backbone's weights missing), plus `extra` (e.g. the CLI's UsageError)."""
    return (ValueError, KeyError, OSError, ImportError, BackboneUnavailable, *extra)
