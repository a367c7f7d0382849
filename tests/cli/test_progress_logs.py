"""Progress where the output is not a terminal: plain lines with counts, rate and time left, at
every tenth and at least every 10 s, written whole (rich drew nothing until the end in a log
file, then cut rows to 80 columns)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ftbench.cli.progress import LogProgress, make_progress
from rich.console import Console
from rich.progress import Progress

MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grocery_store_mini"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_every_tenth_with_counts_rate_and_time_left():
    stream, clock = io.StringIO(), Clock()
    label = "encoding 1000 inputs not in the cache: catalog /data/a/rather/long/folder/name/of/the/catalog/2024: text views"
    with LogProgress(stream, clock=clock) as bar:
        task = bar.add_task(label, total=1000)
        for _ in range(100):
            clock.now += 0.5
            bar.advance(task, 10)  # 20 inputs/s
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # the start, then 10%, 20%, ..., 100%
    assert all(line.startswith(label + ": ") for line in lines)  # whole: no width, no ellipsis
    assert lines[0] == f"{label}: 0/1000 (0%)"
    assert lines[1] == f"{label}: 100/1000 (10%), 20/s, 0:00:05 elapsed, ETA 0:00:45"
    assert lines[-1] == f"{label}: 1000/1000 (100%), 20/s, 0:00:50 elapsed"


def test_a_slow_task_still_writes_a_line_every_ten_seconds():
    stream, clock = io.StringIO(), Clock()
    bar = LogProgress(stream, interval_s=10.0, clock=clock)
    task = bar.add_task("train", total=1000, info="")
    for step in range(1, 13):  # 3 s a step: no tenth crossed in 36 s
        clock.now += 3.0
        bar.update(task, completed=step, info=f"loss {1 / step:.4f}")
    lines = stream.getvalue().splitlines()[1:]
    assert [re.match(r"train: (\d+)/1000", line).group(1) for line in lines] == ["4", "8", "12"]
    assert lines[0].endswith("0:00:12 elapsed, ETA 0:49:48; loss 0.2500")
    bar.update(task, completed=13)
    bar.stop()  # where the task stands when the display stops
    assert stream.getvalue().splitlines()[-1].startswith("train: 13/1000 (1%)")


def test_a_new_phase_on_the_same_row_restarts_its_rate_and_hidden_rows_say_nothing():
    stream, clock = io.StringIO(), Clock()
    bar = LogProgress(stream, clock=clock)
    row = bar.add_task("run", total=1, visible=False)
    bar.reset(row, total=4, visible=True, description="train")
    for step in range(1, 5):
        clock.now += 1.0
        bar.update(row, description="train", completed=step, total=4)
    bar.update(row, description="evaluate", completed=0, total=1)
    clock.now += 2.0
    bar.update(row, description="evaluate", completed=1, total=1)
    bar.update(row, visible=False)
    bar.update(row, completed=1)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train: 0/4 (0%)"
    assert lines[-2] == "evaluate: 0/1 (0%)"
    assert lines[-1] == "evaluate: 1/1 (100%), 0.5/s, 0:00:02 elapsed"
    assert sum(line.startswith("train: 4/4 (100%), 1/s") for line in lines) == 1


def test_make_progress_draws_bars_only_in_a_terminal():
    plain = Console(file=io.StringIO(), force_terminal=False, force_jupyter=False)
    terminal = Console(file=io.StringIO(), force_terminal=True, force_jupyter=False)
    assert isinstance(make_progress(console=plain), LogProgress)
    assert isinstance(make_progress(console=terminal), Progress)
    assert isinstance(make_progress(console=plain, disable=True), Progress)  # --quiet: nothing at all


@pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")
def test_a_run_with_its_output_in_a_file_logs_encoding_training_and_evaluation(tmp_path):
    log = tmp_path / "run.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "FTBENCH_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "80",
    }
    with log.open("w") as handle:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ftbench",
                "run",
                "--objective",
                "clip",
                "--views",
                "2",
                "--dataset",
                "grocery-store",
                "--data-dir",
                str(MINI),
                "--set",
                "dataset.image_backbone=hash",
                "--set",
                "dataset.text_backbone=hash",
                "--steps",
                "4",
                "--batch-size",
                "8",
                "--set",
                "train.eval_every=2",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out"),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=600,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    images = f"encoding 491 inputs not in the cache: grocery-store {MINI}: image views"
    encoding = [line for line in text.splitlines() if line.startswith(images + ": ")]
    assert encoding[0] == f"{images}: 0/491 (0%)" and encoding[-1].startswith(f"{images}: 491/491 (100%), ")
    assert len(encoding) >= 5 and all(len(line) > 80 for line in encoding)  # at every tenth, not cut
    assert re.search(r"^encoding 519 inputs not in the cache: grocery photo queries: 519/519 \(100%\), [\d,.]+/s", text, re.M)
    assert re.search(r"^train: 4/4 \(100%\), .*; loss \d\.\d{4}$", text, re.M)
    assert re.search(r"^evaluate: 1/1 \(100%\)", text, re.M)
    progress = [line for line in text.splitlines() if re.match(r"(encoding|train|evaluate)\b", line)]
    assert "\x1b[" not in text and not any("━" in line or "…" in line for line in progress)  # no bars, no cuts
