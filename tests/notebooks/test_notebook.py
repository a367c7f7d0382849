"""notebooks/compare_objectives.ipynb runs headless (nbclient) on the fixture results set.

The kernel is the test's own interpreter (the venv's python): a kernel spec named `python3` is
written into a temporary JUPYTER_PATH folder, which jupyter_client searches before any user or
system folder, so a fresh CI machine with only the venv runs the same kernel.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "compare_objectives.ipynb"
GENERATOR = ROOT / "tests" / "fixtures" / "results" / "generate.py"


def _fixture_results(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("ftbench_fixture_results_generator_nb", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(out)
    return out


def test_notebook_executes_on_fixture_results(tmp_path, monkeypatch):
    results = _fixture_results(tmp_path / "results")
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ftbench venv)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("FTBENCH_RESULTS", str(results))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the inline backend shows the plot

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()

    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    errors = [o for outs in outputs.values() for o in outs if o.get("output_type") == "error"]
    assert not errors
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for outs in outputs.values() for o in outs
    )
    assert "23 run results" in text  # the two unreadable fixture files are skipped
    # the main table of the first group (paper scale): clip .50 .52 .54 -> 0.52 ± 0.0497 (n=3)
    assert "0.5200 ± 0.0497 (n=3)" in text
    assert "+0.0500 ± 0.0248 (+9.6% ± 4.3%), n=3" in text  # paired difference against clip
    assert any("image/png" in o.get("data", {}) for outs in outputs.values() for o in outs)  # the plot
    assert "23 result files via ftbench.load_results; objectives: clip," in text  # the Python API cell
