"""The CLI's re-execution onto a huge-page heap: when it happens, and that the CLI still runs."""

import os
import subprocess
import sys

from ftbench import heap


def test_reexec_only_where_it_helps(monkeypatch):
    monkeypatch.setattr(heap, "thp_mode", lambda: "madvise")
    monkeypatch.setattr(heap, "_glibc_at_least", lambda major, minor: True)
    monkeypatch.setattr(heap.sys, "platform", "linux")
    assert heap.should_reexec({})
    assert heap.should_reexec({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert not heap.should_reexec({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})  # already set: no loop
    assert not heap.should_reexec({"FTBENCH_HUGEPAGES": "0"})
    monkeypatch.setattr(heap, "thp_mode", lambda: "always")
    assert not heap.should_reexec({})
    monkeypatch.setattr(heap, "thp_mode", lambda: "never")
    assert not heap.should_reexec({})
    monkeypatch.setattr(heap, "thp_mode", lambda: "madvise")
    monkeypatch.setattr(heap, "_glibc_at_least", lambda major, minor: False)
    assert not heap.should_reexec({})


def test_describe_names_the_source_of_large_pages(monkeypatch):
    monkeypatch.setattr(heap, "thp_mode", lambda: "madvise")
    monkeypatch.setenv("GLIBC_TUNABLES", heap.TUNABLE)
    assert heap.describe().startswith("transparent huge pages via GLIBC_TUNABLES")
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert heap.describe().startswith("small pages (THP mode madvise")


def test_cli_runs_with_and_without_the_reexecution():
    for flag in ("1", "0"):
        env = {**os.environ, "FTBENCH_HUGEPAGES": flag}
        env.pop("GLIBC_TUNABLES", None)
        out = subprocess.run([sys.executable, "-m", "ftbench", "--version"], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("ftbench ")
