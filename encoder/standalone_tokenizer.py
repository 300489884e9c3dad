"""A checkpoint's fast tokenizer read with the ``tokenizers`` package alone (no transformers, no
torch), for the ONNX encoder's start from an indexed artefact (:mod:`encoder.checkpoint_index`).

``from transformers import AutoTokenizer`` imports torch (transformers 5), which is most of the
memory the int8 ONNX path saves. :class:`StandaloneTokenizer` answers the calls
:class:`encoder.base.BatchedEncoder` makes of a transformers fast tokenizer, from the checkpoint's
``tokenizer.json``: the same Rust tokenizer, with its stored truncation and padding switched off
(transformers switches them off too when called with ``truncation=False`` and no padding).
It is only used for a checkpoint whose token ids were found equal to transformers' on the check
sample when its index entry was written (:func:`same_token_ids`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from encoder.exceptions import EncoderError

TOKENIZER_FILE = "tokenizer.json"


class StandaloneTokenizer:
    """``tokenizer(text_or_texts, add_special_tokens=...)["input_ids"]`` on ``tokenizers`` alone,
    with ``model_max_length`` and ``pad_token_id`` as transformers gave them for the checkpoint."""

    is_fast = True

    def __init__(self, tokenizer: Any, model_max_length: int, pad_token_id: int) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.model_max_length = model_max_length
        self.pad_token_id = pad_token_id

    @classmethod
    def from_checkpoint(
        cls, directory: Path, model_max_length: int, pad_token_id: int
    ) -> StandaloneTokenizer | None:
        """The tokenizer of the checkpoint in ``directory``, or None when it has no
        ``tokenizer.json`` (a slow-only tokenizer) or the file does not load."""
        from tokenizers import Tokenizer

        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            return None
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception:  # the Rust side raises plain Exception on a malformed file
            return None
        return cls(tokenizer, model_max_length, pad_token_id)

    def __call__(
        self,
        texts: str | Sequence[str],
        *,
        add_special_tokens: bool = True,
        truncation: bool = False,
        return_attention_mask: bool = False,
        return_token_type_ids: bool = False,
        verbose: bool = False,
    ) -> dict[str, Any]:
        """``{"input_ids": ids}`` for one text, ``{"input_ids": [ids, ...]}`` for a list; no
        truncation, no padding, no attention mask or token type ids (``BatchedEncoder`` pads and
        masks itself)."""
        if truncation or return_attention_mask or return_token_type_ids:
            raise EncoderError("StandaloneTokenizer gives input ids only, untruncated")
        if isinstance(texts, str):
            return {
                "input_ids": self._tokenizer.encode(
                    texts, add_special_tokens=add_special_tokens
                ).ids
            }
        batch = self._tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in batch]}


def same_token_ids(reference: Any, candidate: Any, texts: Sequence[str]) -> bool:
    """Whether ``candidate`` gives ``reference``'s token ids (with and without special tokens),
    its ``model_max_length`` and ``pad_token_id`` on ``texts``."""
    if int(reference.model_max_length) != candidate.model_max_length:
        return False
    if int(reference.pad_token_id or 0) != candidate.pad_token_id:
        return False
    texts = list(texts)
    for special in (True, False):
        want = reference(texts, add_special_tokens=special, truncation=False, verbose=False)
        got = candidate(texts, add_special_tokens=special)
        if [list(ids) for ids in want["input_ids"]] != got["input_ids"]:
            return False
    return True
