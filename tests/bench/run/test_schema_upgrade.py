"""Result files of schema version 1 (`mrr`) are still read, named as version 2 names them (`mrr@C`)."""

import json
from pathlib import Path

from ftbench.run.results import SCHEMA_VERSION, load_result

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "results"


def test_version_1_files_are_read_with_the_reciprocal_rank_named_by_its_cutoff(tmp_path):
    source = sorted(FIXTURES.glob("synthetic__*.json"))[0]
    payload = json.loads(source.read_text())
    assert payload["schema_version"] == 1
    payload["counts"].setdefault("evaluation", {})["query->item"] = {"mrr_cutoff": 100}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(payload))
    result = load_result(path)
    assert result.schema_version == SCHEMA_VERSION == 2
    query = result.metrics["query->item"]
    assert "mrr" not in query and query["mrr@100"] == payload["metrics"]["query->item"]["mrr"]
    cross = [t for t, v in payload["metrics"].items() if t != "query->item" and "mrr" in v]
    assert cross and all(result.metrics[t]["mrr@500"] == payload["metrics"][t]["mrr"] for t in cross)
    assert any("schema version 1" in n for n in result.notes)
