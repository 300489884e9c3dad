"""A fine-tuned model out of training: scored as the worker would embed with it, and saved as a
plain Hugging Face directory that sentence-transformers loads too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from encoder.protocol import TextEncoder

# sentence-transformers files copied next to the weights, so a version also loads there
_ST_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
)


def eval_encoder(
    model: Any, tokenizer: Any, version: str, *, max_len: int = 128, device: str = "cpu"
) -> TextEncoder:
    """The inference encoder (`encoder.bert.BertEncoder`) over an in-memory model, in float32 and
    without a cache, so a candidate is scored exactly as the worker would embed with it, before
    it is saved, and the model can still be trained afterwards."""
    import torch

    from encoder.bert import BertEncoder

    return BertEncoder.from_loaded(
        model,
        tokenizer,
        version,
        device=device,
        max_len=max_len,
        cache_size=0,
        dtype=torch.float32,
    )


def save_model(model: Any, tokenizer: Any, dest: Path | str, source_dir: Path | str | None) -> None:
    """Writes ``model`` and ``tokenizer`` to ``dest`` as a plain Hugging Face directory.

    The sentence-transformers files of ``source_dir`` (pooling config, modules.json) are copied too,
    so the directory also loads with ``SentenceTransformer(dest)``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    if source_dir is not None:
        src = Path(source_dir)
        for name in _ST_FILES:
            p = src / name
            if p.is_dir():
                shutil.copytree(p, dest / name, dirs_exist_ok=True)
            elif p.is_file():
                shutil.copy2(p, dest / name)
