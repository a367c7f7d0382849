"""The CLI process's heap on transparent huge pages (Linux, glibc >= 2.35): fewer page faults.

Why. Evaluation and training allocate and free large temporaries (score blocks, gathered
candidates, tower activations over 4,096-item batches). glibc serves every allocation above its
mmap threshold (at most 32 MiB) with a fresh `mmap` and returns it with `munmap` on free, so each
such temporary is first-touched page by page: millions of minor page faults in a paper-scale run
(docs/perf/index.md, "One paper-scale run"). On kernels whose transparent-huge-page mode is
"madvise" (the common default), glibc's tunable `glibc.malloc.hugetlb=1` makes malloc advise
MADV_HUGEPAGE on its mappings, so a 2 MiB page is faulted where 512 small ones were.

How. glibc reads GLIBC_TUNABLES only when a process starts, so `ftbench` (the console script and
`python -m ftbench`) re-executes itself once with the tunable added, before anything is imported
or computed - same interpreter, arguments and environment otherwise. It does so only where it
can help: Linux with glibc >= 2.35, THP mode "madvise" (with "always" the heap already uses huge
pages; with "never" it cannot), and the tunable not already set. FTBENCH_HUGEPAGES=0 turns it off.
Results do not depend on it: only where memory comes from changes, not what is computed.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), None if unknown."""
    try:
        with open(_THP_MODE) as fh:
            text = fh.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def _glibc_at_least(major: int, minor: int) -> bool:
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return False
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return parts >= (major, minor)


def describe() -> str:
    """One line for a run's device record: where the heap's large pages come from."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    mode = thp_mode()
    if TUNABLE in tunables and mode == "madvise":
        return f"transparent huge pages via GLIBC_TUNABLES={TUNABLE} (THP mode madvise)"
    if mode == "always":
        return "transparent huge pages (THP mode always)"
    return f"small pages (THP mode {mode or 'unknown'}; GLIBC_TUNABLES={tunables or 'unset'})"


def should_reexec(environ: dict | None = None) -> bool:
    env = os.environ if environ is None else environ
    return (
        sys.platform.startswith("linux")
        and env.get("FTBENCH_HUGEPAGES", "1") != "0"
        and "glibc.malloc.hugetlb" not in env.get("GLIBC_TUNABLES", "")
        and thp_mode() == "madvise"
        and _glibc_at_least(2, 35)
    )


def reexec_with_huge_pages(argv: list[str]) -> None:
    """Replace this process by `python -m ftbench ARGS` with the tunable set (see module doc);
    returns (does nothing) where it would not help."""
    if not should_reexec():
        return
    env = dict(os.environ)
    tunables = env.get("GLIBC_TUNABLES", "")
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "ftbench", *argv[1:]], env)
