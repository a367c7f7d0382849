"""`make run` must not write into the committed results/: its folder is git-ignored."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_make_run_writes_to_a_git_ignored_folder():
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    run_line = next(line for line in dry.splitlines() if "ftbench run" in line)
    out = run_line.split("--out", 1)[1].split()[0]
    assert Path(out).parts[0] != "results", run_line
    inside = (ROOT / ".git").exists() and subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True
    ).returncode == 0
    if not inside:
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{out}/synthetic__factorized__v8__s0__0123456789.json"], cwd=ROOT)
    assert ignored.returncode == 0, f"{out}/ is not git-ignored"
