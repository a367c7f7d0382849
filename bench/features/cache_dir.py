"""Where the feature cache lives by default; the file-hash cache of the data fingerprints sits beside it.

A module of its own, importing nothing from the package, so that the data fingerprints
(`ftbench.data.fingerprint`) and the backbones can find the folder without importing the cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$FTBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/ftbench/features``, else ``~/.cache/...``."""
    env = os.environ.get("FTBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ftbench" / "features"
