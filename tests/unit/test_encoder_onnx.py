"""The ONNX Runtime int8 path on the tiny test BERT: export, quantise, check, cache, fall back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from encoder import onnx_export
from encoder.backend import choose_backend, load_text_encoder
from encoder.bert import BertEncoder
from encoder.exceptions import EncoderError
from encoder.onnx_encoder import OnnxEncoder, OnnxRejected, load_onnx_encoder
from encoder.protocol import TextEncoder

TEXTS = [
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "Acme wireless headphones | Electronics > Audio | Battery lasts up to 30 hours.",
    "regency cakestand 3 tier",
    "a",
]


@pytest.fixture(scope="module")
def tiny_dir(tiny_bert: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved as a checkpoint directory (as a registry version is)."""
    net, tokenizer, _ = tiny_bert()
    path = tmp_path_factory.mktemp("tiny-bert")
    net.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_dir: Path, onnx_cache: Path) -> OnnxEncoder:
    return load_onnx_encoder(str(tiny_dir), threads=1, cache_dir=onnx_cache)


@pytest.fixture(scope="module")
def tiny_torch(tiny_dir: Path) -> BertEncoder:
    from encoder.bert import load_encoder

    return load_encoder(str(tiny_dir), device="cpu", dtype="float32", cache_size=0)


def test_int8_model_agrees_with_float32_pytorch(
    tiny_onnx: OnnxEncoder, tiny_torch: BertEncoder
) -> None:
    assert isinstance(tiny_onnx, TextEncoder)
    assert tiny_onnx.version == tiny_torch.version  # same weights, same version
    assert tiny_onnx.dim == tiny_torch.dim == 32
    got = tiny_onnx.encode_uncached(TEXTS)
    want = tiny_torch.encode_uncached(TEXTS)
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * want).sum(axis=1).min() > 0.98


def test_the_file_is_made_once_per_version(
    tiny_onnx: OnnxEncoder, tiny_dir: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = onnx_export.artefact_dir(onnx_cache, tiny_onnx.version)
    assert (directory / onnx_export.ONNX_FILE).is_file()
    assert (directory / onnx_export.CHECK_FILE).is_file()

    def no_export(*_: Any) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    again = load_onnx_encoder(str(tiny_dir), threads=1, cache_dir=onnx_cache)
    np.testing.assert_allclose(again.encode(TEXTS), tiny_onnx.encode_uncached(TEXTS), atol=1e-6)


def test_a_file_made_under_the_default_home_is_reused(
    tiny_onnx: OnnxEncoder,
    tiny_dir: Path,
    onnx_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from encoder import onnx_encoder

    def no_export(*_: Any) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_encoder, "default_cache_dir", lambda: onnx_cache)
    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    fresh_home = tmp_path / "home" / "onnx"
    again = load_onnx_encoder(str(tiny_dir), threads=1, cache_dir=fresh_home)
    assert again.version == tiny_onnx.version and not fresh_home.exists()


def test_a_failed_check_falls_back_to_pytorch(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(OnnxRejected, match="FAILED"):
        load_onnx_encoder(str(tiny_dir), threads=1, cache_dir=tmp_path, min_median=1.01)

    with caplog.at_level(logging.WARNING, "tastegraph.encoder"):
        # the stored figures are judged again on every load: a stricter bar rejects the same file
        encoder = load_text_encoder(
            str(tiny_dir), backend="onnx", threads=1, onnx_cache_dir=tmp_path, min_median=1.01
        )
    assert isinstance(encoder, BertEncoder) and encoder.device.type == "cpu"
    assert [r.message for r in caplog.records if "falling back to PyTorch" in r.message]


def test_encode_deduplicates_within_a_call_and_caches_across_calls(tiny_onnx: Any) -> None:
    fresh = OnnxEncoder(
        tiny_onnx._session, tiny_onnx.tokenizer, tiny_onnx.version, tiny_onnx.dim, cache_size=100
    )
    first = fresh.encode(["red mug", "blue mug", "red  mug", "red mug"])
    assert fresh.stats.texts_encoded == 2  # "red  mug" normalises to "red mug"
    assert fresh.stats.cache_hits == 2 and fresh.stats.cache_misses == 2
    np.testing.assert_array_equal(first[0], first[2])
    second = fresh.encode(["blue mug", "green mug"])
    assert fresh.stats.texts_encoded == 3  # only "green mug" is new
    np.testing.assert_array_equal(second[0], first[1])


def test_backend_choice() -> None:
    assert choose_backend("torch", "cpu") == "torch"
    assert choose_backend("onnx", "cpu") == "onnx"
    assert choose_backend("auto", "cpu") == "onnx"
    with pytest.raises(EncoderError, match="expected one of"):
        choose_backend("tensorrt", "cpu")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TASTEGRAPH_ENCODER_BACKEND": "tensorrt"},
            "TASTEGRAPH_ENCODER_BACKEND.*auto.*torch.*onnx",
        ),
        (
            {"TASTEGRAPH_ENCODER_BACKEND": "onnx", "TASTEGRAPH_DEVICE": "cuda"},
            "runs on the CPU",
        ),
    ],
)
def test_the_backend_setting_is_validated(env: dict[str, str], message: str) -> None:
    from config.exceptions import ConfigError
    from config.settings import Settings

    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_choose_the_backend(tiny_dir: Path, tmp_path: Path) -> None:
    from config.settings import Settings
    from encoder.backend import load_encoder_from_settings

    env = {"TASTEGRAPH_HOME": str(tmp_path), "TASTEGRAPH_ENCODER_THREADS": "1"}
    onnx = load_encoder_from_settings(
        Settings.from_env(env | {"TASTEGRAPH_ENCODER_BACKEND": "onnx"}), str(tiny_dir)
    )
    assert isinstance(onnx, OnnxEncoder)
    assert (tmp_path / "onnx").is_dir()  # the int8 file lives under TASTEGRAPH_HOME
    torch_encoder = load_encoder_from_settings(
        Settings.from_env(env | {"TASTEGRAPH_ENCODER_BACKEND": "torch"}), str(tiny_dir)
    )
    assert isinstance(torch_encoder, BertEncoder)
    assert torch_encoder.version == onnx.version


def test_bench_encoder_times_the_onnx_path_beside_torch(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import gzip
    import json

    from cli import bench
    from config.settings import Settings

    catalogue = tmp_path / "items.jsonl.gz"
    rows = [{"title": t, "category": None} for t in [*TEXTS, TEXTS[0], "", "PINK MUG", "RED MUG"]]
    with gzip.open(catalogue, "wt") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    argv = ["encoder", "--model", str(tiny_dir), "--texts-file", str(catalogue), "--texts", "5"]
    args = parser.parse_args(
        [*argv, "--device", "cpu", "--threads", "1", "--json", "--rounds", "1"]
    )
    assert bench.run(args, Settings.from_env({"TASTEGRAPH_HOME": str(tmp_path)})) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["texts"] == 5  # distinct non-empty texts, the first five
    assert report["onnx_texts_per_s"] > 0 and report["onnx_vs_torch"] > 0
    median, p1, low = report["cosine_to_float32_onnx_median_p1_min"]
    assert 1.0 >= median >= p1 >= low > 0.9
    assert report["cosine_to_float32_torch_median_p1_min"][2] > 0.99
