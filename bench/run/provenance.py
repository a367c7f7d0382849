"""Where a result came from, and how to make it again.

Every result file carries a ``provenance`` block: the git commit of the ftbench source that ran
(and whether its tree had uncommitted changes), the command line, the working folder, the host,
and the run options that the config does not hold (device, determinism). ``ftbench rerun
RESULT.json`` reads the recorded config back (`spec_from_result`) and runs it again; a run can also
be started from a TOML file with the same keys as ``--set`` (`sets_from_config_file`)::

    # a run config: bare keys as in --set, or one table per section
    primary_weight = 0.7            # --set primary_weight=0.7 (a key of exactly one section)
    [train]
    steps = 300                     # --set train.steps=300
    [dataset]
    seed = 1                        # --set dataset.seed=1 (the generator's seed, not --seed)
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from .claims import redact_url
from .spec import SECTIONS, RunSpec

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # bench/run/ -> the checkout (or site-packages)


def git_state(root: Path = SOURCE_ROOT) -> dict[str, Any]:
    """{"commit": sha or None, "dirty": bool or None, ...}: the commit of the ftbench source tree
    and whether tracked files differ from it; None with a reason when it is not a git checkout
    (an installed wheel) or git is missing."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        if git("rev-parse", "--show-toplevel") and Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return {"commit": None, "dirty": None, "git_note": f"{root} is not the top of a git checkout"}
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
    except FileNotFoundError:
        return {"commit": None, "dirty": None, "git_note": "git is not installed"}
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None, "git_note": f"{root} is not a git checkout"}
    return {"commit": commit, "dirty": dirty, "branch": branch}


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (shell-quoted), with the program shown as `ftbench` when it is ours
    and any password of a URL in it (``--storage postgresql://user:pw@host/db``) shown as `***`."""
    argv = list(sys.argv if argv is None else argv)
    if argv and (
        Path(argv[0]).name == "ftbench"
        or (Path(argv[0]).name == "__main__.py" and Path(argv[0]).resolve().parent == SOURCE_ROOT / "bench")
    ):
        argv[0] = "ftbench"  # `python -m ftbench` too
    return redact_url(shlex.join(argv))


def collect(spec) -> dict[str, Any]:
    """The provenance block of a result file for the run `spec` (a RunSpec)."""
    return {
        **git_state(),
        "command": command_line(),
        "cwd": os.getcwd(),
        "host": platform.node(),
        "run_options": {"device": spec.device, "deterministic": bool(spec.deterministic), "precision": spec.precision},
    }


# ----------------------------------------------------------------------------------------------
# a run from a config: a TOML file, or a result file's recorded config
# ----------------------------------------------------------------------------------------------


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]  # the Python 3.10 fallback of the same module
        except ModuleNotFoundError:
            raise ValueError(f"--config {path}: reading TOML needs Python >= 3.11 or the `tomli` package") from None
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--config {str(path)!r}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"--config {str(path)!r} is a folder, expected a TOML file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"--config {path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path}: not valid TOML ({exc})") from None


def sets_from_config_file(path: Path) -> list[str]:
    """The `--set` strings a TOML run config stands for: bare keys as `key=value`, tables
    `[objective]`, `[dataset]`, `[train]`, `[tower]`, `[eval]` as `section.key=value`."""
    payload = _load_toml(path)
    sets = []
    for key, value in payload.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise ValueError(
                    f"--config {path}: table [{key}] is not a config section (expected one of {', '.join(SECTIONS)})"
                )
            for inner, inner_value in value.items():
                if isinstance(inner_value, dict):
                    raise ValueError(f"--config {path}: [{key}] {inner} is a table, expected a value")
                sets.append(f"{key}.{inner}={inner_value!r}")
        else:
            sets.append(f"{key}={value!r}")
    return sets


def spec_from_result(payload: dict[str, Any], device: str | None = None):
    """A RunSpec that runs the recorded config of a result file again: every field of every
    section as an explicit `--set` (so a changed default cannot change the rerun), the run's
    views, seed, precision and determinism; `device` replaces the recorded device option."""
    config = payload.get("config")
    if not isinstance(config, dict):
        raise ValueError("the result file has no config object")
    missing = [k for k in ("objective", "dataset", "views", "seed") if k not in config]
    missing += [f"{s}_config" for s in SECTIONS if not isinstance(config.get(f"{s}_config"), dict)]
    if missing:
        raise ValueError(f"the result file's config lacks {', '.join(missing)}")
    sets = [f"{s}.{key}={value!r}" for s in SECTIONS for key, value in config[f"{s}_config"].items()]
    recorded = (payload.get("provenance") or {}).get("run_options", {})
    return RunSpec(
        objective=config["objective"],
        dataset=config["dataset"],
        views=int(config["views"]),
        seed=int(config["seed"]),
        device=device or recorded.get("device", "auto"),
        sets=sets,
        deterministic=bool(recorded.get("deterministic", False)),
        precision=config.get("precision", "fp32"),
    )
