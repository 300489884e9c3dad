"""Exporting a loaded BERT to ONNX, quantising it to int8, and checking it against float32 PyTorch.

The recipe: the float32 model traced to ONNX (opset 17; batch and sequence axes dynamic; output
``last_hidden_state``, pooling stays in numpy), then ONNX Runtime's *dynamic* int8 quantisation,
**per output channel, MatMul nodes only** (embeddings, LayerNorm, GELU and softmax stay float32).
Per-tensor int8 was measured and rejected: on Online Retail titles its cosine to float32 was 0.968
on the median text; per-channel MatMul-only gives 0.993 (see the encoder docs).

The artefacts live in ``<cache_dir>/<version>/<recipe>/``: ``model.onnx`` (int8) and
``check.json`` (the cosines of :func:`check_quantised`). Both are keyed by the model's version
(a digest of its weights), so a fine-tuned version gets its own file, and a model is exported,
quantised and checked once: later loads only read ``check.json`` (a rejected model is not
re-exported on every start either). A new directory is written under a temporary name and renamed
into place, so two workers starting at once never see half a file.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoder.exceptions import EncoderError

log = logging.getLogger("tastegraph.encoder")

RECIPE = "int8-dynamic-perchannel-matmul-opset17"
MIN_MEDIAN_COSINE = 0.99  # the acceptance bar: median text
MIN_P1_COSINE = 0.98  # ... and the 1st percentile
ONNX_FILE = "model.onnx"
CHECK_FILE = "check.json"


@dataclass(frozen=True, slots=True)
class QuantisationCheck:
    """Cosine of the int8 model's embeddings to float32 PyTorch's, over ``texts`` sample texts."""

    texts: int
    median: float
    p1: float
    min: float
    min_median: float
    min_p1: float

    @property
    def passed(self) -> bool:
        return self.median >= self.min_median and self.p1 >= self.min_p1

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"int8 vs float32 cosine over {self.texts} texts: median {self.median:.4f} "
            f"(bar {self.min_median}), p1 {self.p1:.4f} (bar {self.min_p1}), min {self.min:.4f}: "
            f"{verdict}"
        )


@dataclass(frozen=True, slots=True)
class OnnxArtefact:
    """A quantised model file and the check it got when it was made."""

    path: Path
    check: QuantisationCheck


def check_texts(n: int = 192) -> list[str]:
    """The sample the check encodes: ``n`` product texts (title | category | description, up to
    past 128 tokens) and as many bare upper-case titles (like Online Retail's), fixed seed."""
    from encoder.bench import product_texts

    texts = product_texts(n, seed=7)
    return texts + [t.split(" | ")[0].upper() for t in texts]


def artefact_dir(cache_dir: Path, version: str) -> Path:
    """``<cache_dir>/<version, made file-name safe>/<recipe>``."""
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", version)
    return Path(cache_dir) / safe / RECIPE


def export_onnx(model: Any, path: Path, opset: int = 17) -> None:
    """Trace ``model`` (a transformers BERT-family ``AutoModel``) to an ONNX file at ``path``.

    Exports a float32 CPU copy in eval mode, so ``model`` itself (its dtype, device and training
    flag) is left as it was. Inputs ``input_ids``, ``attention_mask`` (int64, ``batch x seq``);
    output ``last_hidden_state`` (float32, ``batch x seq x hidden``).
    """
    import torch

    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # padding in the example, so that the traced graph keeps the attention mask
    ids = torch.tensor([[101, 7592, 2088, 2003, 102], [101, 7592, 102, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings about shape-dependent branches
        torch.onnx.export(
            _Hidden(net).eval(),
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed
        )


def quantise_int8(src: Path, dst: Path) -> None:
    """Dynamic int8, per output channel, MatMul nodes only (see the module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()  # quantize_dynamic warns about pre-processing on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )
    finally:
        quiet.setLevel(level)


def cosine_summary(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``(median, 1st percentile, min)`` of the row-wise cosines of two row-normalised arrays."""
    cos = (a * b).sum(axis=1)
    return float(np.median(cos)), float(np.percentile(cos, 1)), float(cos.min())


def check_quantised(
    reference: np.ndarray,
    quantised: np.ndarray,
    min_median: float = MIN_MEDIAN_COSINE,
    min_p1: float = MIN_P1_COSINE,
) -> QuantisationCheck:
    """Cosines of the quantised embeddings to the float32 reference (same texts, same order)."""
    median, p1, low = cosine_summary(reference, quantised)
    return QuantisationCheck(
        len(reference), round(median, 5), round(p1, 5), round(low, 5), min_median, min_p1
    )


def read_artefact(
    directory: Path, min_median: float = MIN_MEDIAN_COSINE, min_p1: float = MIN_P1_COSINE
) -> OnnxArtefact | None:
    """The artefact in ``directory`` with its stored cosines judged against these bars, or None
    when it is missing or unreadable."""
    try:
        raw = json.loads((directory / CHECK_FILE).read_text())["check"]
        check = QuantisationCheck(
            int(raw["texts"]), float(raw["median"]), float(raw["p1"]), float(raw["min"]),
            min_median, min_p1,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path = directory / ONNX_FILE
    return OnnxArtefact(path, check) if path.is_file() else None


def build_artefact(
    model: Any,
    directory: Path,
    run_check: Callable[[Path], QuantisationCheck],
    min_median: float = MIN_MEDIAN_COSINE,
    min_p1: float = MIN_P1_COSINE,
) -> OnnxArtefact:
    """Export, quantise and check into ``directory`` (written under a temporary name, renamed).

    ``run_check(onnx_path)`` encodes the sample with the quantised file and returns the cosines.
    The file is kept whatever the verdict, with the figures, so the next start decides from
    ``check.json`` without exporting again.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the file from other users of a shared cache
    try:
        export_onnx(model, tmp / "float32.onnx")
        quantise_int8(tmp / "float32.onnx", tmp / ONNX_FILE)
        (tmp / "float32.onnx").unlink()
        check = run_check(tmp / ONNX_FILE)
        meta = {"recipe": RECIPE, "check": asdict(check), **_versions()}
        (tmp / CHECK_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(tmp, directory)
        except OSError:  # another process renamed its copy into place first: use that one
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    artefact = read_artefact(directory, min_median, min_p1)
    if artefact is None:
        raise EncoderError(f"ONNX export into {directory} left no readable artefact")
    return artefact


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def embed_reference(
    model: Any, tokenizer: Any, texts: Sequence[str], max_len: int, per_text: bool = False
) -> np.ndarray:
    """Float32 PyTorch embeddings of ``texts`` from a float32 CPU copy of ``model``: length-sorted
    batches (within 1e-4 of one text per call, see ``min_cosine_naive_vs_optimised``), or with
    ``per_text`` one text per forward call on one torch thread (the benchmark's reference)."""
    import torch

    from encoder.bench import naive_encode
    from encoder.bert import BertEncoder

    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    reference = BertEncoder(
        net, tokenizer, "reference", device="cpu", dtype="float32", max_len=max_len, cache_size=0
    )
    if not per_text:
        return reference.encode_uncached(texts)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one text per call: one thread is several times faster
    try:
        return naive_encode(reference, texts)
    finally:
        torch.set_num_threads(threads)
