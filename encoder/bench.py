"""The encoder benchmark behind `tastegraph bench encoder`: naive against optimised, in one run.

*Naive* is what the design article does: one text per forward call (tokenise, forward, pool), in
``torch.inference_mode`` on the same model, device, dtype and threads (so a bfloat16 speed-up
counts on both sides; only batching makes the difference). *Optimised* is
:meth:`BertEncoder.encode_uncached`: one tokenizer call, token-budget batches sorted by length,
each padded to its own longest text. Both encode the same N generated product-like texts.

The machine may be shared, so the two are interleaved in ``rounds``: each round encodes one slice
of the texts naively and then all N texts optimised; both rates come from summed times, so a burst
of load from a neighbour hits both sides alike. ``cached_texts_per_s`` is a further pass through
:meth:`BertEncoder.encode` once the cache holds every text.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import resource
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("tastegraph.encoder")

RANDOM_BERT_BASE = "bert-base-random"

_ADJECTIVES = (
    "wireless", "organic", "stainless", "lightweight", "vintage", "ergonomic", "waterproof",
    "premium", "compact", "handmade", "slim", "heavy-duty", "breathable", "adjustable", "smart",
    "ceramic", "bamboo", "insulated", "foldable", "rechargeable",
)  # fmt: skip
_NOUNS = (
    "headphones", "running shoes", "coffee grinder", "yoga mat", "backpack", "desk lamp",
    "chef's knife", "water bottle", "sofa cushion", "phone case", "hiking boots", "blender",
    "wool sweater", "office chair", "mechanical keyboard", "tea kettle", "sunglasses",
    "camping tent", "baby stroller", "skillet", "board game", "wrist watch", "duvet cover",
)  # fmt: skip
_BRANDS = ("Acme", "Northwind", "Lumen", "Kestrel", "Orchid & Co", "Tundra", "Vela", "Brightline")
_CATEGORIES = (
    "Electronics > Audio", "Sports > Running", "Home > Kitchen", "Sports > Yoga", "Bags",
    "Home > Lighting", "Outdoors > Hiking", "Fashion > Knitwear", "Office > Furniture",
    "Toys > Games", "Baby > Travel", "Fashion > Accessories", "Home > Bedding",
)  # fmt: skip
_SENTENCES = (
    "Made from {m} for everyday use.",
    "Designed for {u}, it weighs only {w} grams.",
    "Comes with a {y}-year warranty and free returns within 30 days.",
    "Customers love the {a} finish and the attention to detail.",
    "Compatible with most {n} accessories sold separately.",
    "Dishwasher safe; wipe clean with a damp cloth.",
    "Available in {c} and several other colours.",
    "The {a} design fits small apartments and busy commutes alike.",
    "Battery lasts up to {h} hours on a single charge.",
    "Ships in recyclable packaging, assembled in under {h} minutes.",
)
_MATERIALS = ("recycled polyester", "full-grain leather", "aluminium", "merino wool", "oak wood")
_USES = ("commuters", "trail runners", "home cooks", "students", "frequent travellers")
_COLOURS = ("midnight blue", "sage green", "charcoal", "sand", "crimson", "off-white")


def product_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct product texts (``title | category | description``) of varied lengths.

    Lengths run from a bare title (~8 tokens) to long descriptions past 128 tokens (about one text
    in twenty is truncated at the default ``max_len``), roughly like a real catalogue.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        adj, noun = rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
        title = f"{rng.choice(_BRANDS)} {adj} {noun} {rng.choice('ABCDEFGHKMRSTX')}{i}"
        sentences = min(int(rng.expovariate(1 / 3.5)), 16)
        description = " ".join(
            rng.choice(_SENTENCES).format(
                m=rng.choice(_MATERIALS),
                u=rng.choice(_USES),
                w=rng.randint(80, 2400),
                y=rng.randint(1, 5),
                a=adj,
                n=noun,
                c=rng.choice(_COLOURS),
                h=rng.randint(2, 60),
            )
            for _ in range(sentences)
        )
        parts = (title, rng.choice(_CATEGORIES), description)
        out.append(" | ".join(p for p in parts if p))
    return out


def fixed_length_texts(n: int, seq_len: int, seed: int = 0) -> list[str]:
    """``n`` distinct texts of well over ``seq_len`` tokens: with ``max_len=seq_len`` every one is
    truncated to exactly ``seq_len`` tokens (for throughput at a fixed sequence length)."""
    rng = random.Random(seed)
    base = product_texts(n, seed)
    words = [w for s in _SENTENCES for w in s.split() if "{" not in w]
    return [t + " " + " ".join(rng.choice(words) for _ in range(seq_len + 8)) for t in base]


def flops_per_token(config: Any, seq_len: float) -> float:
    """Forward FLOPs per token of a BERT encoder: 2 x the matmul weights, plus attention scores
    and the weighted sum (4 x layers x seq_len x hidden). Embeddings and pooling are left out.

    All-MiniLM-L6 at 128 tokens: about 22 MFLOP; bert-base: about 175 MFLOP.
    """
    h, layers = config.hidden_size, config.num_hidden_layers
    inter = getattr(config, "intermediate_size", 4 * h)
    weights = layers * (4 * h * h + 2 * h * inter)
    return 2.0 * weights + 4.0 * layers * seq_len * h


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def naive_encode(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    """One text per forward call, as the design article does; same pooling, same truncation."""
    import torch

    from encoder.bert import mean_pool

    model, tokenizer, device = encoder.model, encoder.tokenizer, encoder.device
    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=encoder.max_len, return_tensors="pt")
            ids = enc["input_ids"].to(device)
            mask = enc["attention_mask"].to(device)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            rows.append(mean_pool(hidden, mask).cpu().numpy()[0])
    return np.stack(rows) if rows else np.zeros((0, encoder.dim), dtype=np.float32)


def build_encoder(
    model: str,
    device: str = "auto",
    threads: int = 0,
    max_tokens_per_batch: int = 8192,
    max_len: int = 128,
    cache_size: int = 100_000,
    dtype: str = "auto",
) -> Any:
    """:func:`encoder.bert.load_encoder`, or for ``bert-base-random`` a bert-base-sized model with
    random weights (``BertConfig()`` defaults, seed 0) and the default package's uncased
    tokenizer: FLOPs do not depend on the weights, so it measures bert-base throughput; its
    embeddings mean nothing."""
    from encoder.bert import BertEncoder, load_encoder

    if model != RANDOM_BERT_BASE:
        return load_encoder(
            model, device, threads, max_tokens_per_batch, max_len, cache_size, dtype=dtype
        )
    import torch
    from transformers import BertConfig, BertModel

    from encoder.loading import DEFAULT_MODEL, load_pretrained

    _, tokenizer, _ = load_pretrained(DEFAULT_MODEL)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size)
    config._attn_implementation = "sdpa"
    net = BertModel(config, add_pooling_layer=False)
    return BertEncoder(
        net,
        tokenizer,
        f"{RANDOM_BERT_BASE}@seed0",
        device=device,
        threads=threads,
        max_tokens_per_batch=max_tokens_per_batch,
        max_len=max_len,
        cache_size=cache_size,
        dtype=dtype,
    )


def _one_run(
    encoder: Any,
    texts: list[str],
    rounds: int,
    skip_naive: bool,
    peak_tflops: float | None,
    onnx: tuple[Any, Any, Any] | None = None,
) -> dict[str, Any]:
    """``onnx``: ``(OnnxEncoder, float32 model, tokenizer)`` to time beside the torch encoder (each
    round, after it) and to compare both with float32 PyTorch."""
    rounds = max(1, min(rounds, len(texts)))
    warm = texts[: min(16, len(texts))]
    encoder.encode_uncached(warm)
    if onnx is not None:
        onnx[0].encode_uncached(warm)
    if not skip_naive:
        naive_encode(encoder, warm[:4])
    before = encoder.stats.snapshot()
    naive_s = opt_s = onnx_s = 0.0
    naive_rows: list[np.ndarray] = []
    optimised = quantised = np.zeros((0, encoder.dim), dtype=np.float32)
    for r in range(rounds):
        if not skip_naive:
            part = texts[r * len(texts) // rounds : (r + 1) * len(texts) // rounds]
            t0 = time.perf_counter()
            naive_rows.append(naive_encode(encoder, part))
            naive_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        optimised = encoder.encode_uncached(texts)
        opt_s += time.perf_counter() - t0
        if onnx is not None:
            t0 = time.perf_counter()
            quantised = onnx[0].encode_uncached(texts)
            onnx_s += time.perf_counter() - t0
    after = encoder.stats.snapshot()
    n = len(texts)
    texts_per_s = rounds * n / opt_s
    tokens = (after.tokens - before.tokens) / rounds
    padded = (after.padded_tokens - before.padded_tokens) / rounds
    encoder.encode(texts)  # fill the cache
    t0 = time.perf_counter()
    encoder.encode(texts)
    cached_s = time.perf_counter() - t0
    mean_padded_len = padded / n if n else 0.0
    flop = flops_per_token(encoder.model.config, mean_padded_len)
    achieved = padded / (opt_s / rounds) * flop / 1e12
    result: dict[str, Any] = {
        "texts": n,
        "rounds": rounds,
        "naive_texts_per_s": None,
        "texts_per_s": round(texts_per_s, 1),
        "speedup": None,
        "cached_texts_per_s": round(n / cached_s, 1),
        "tokens_per_s": round(tokens / (opt_s / rounds), 1),
        "mean_tokens_per_text": round(tokens / n, 1),
        "padding_share": round(1 - tokens / padded, 4) if padded else 0.0,
        "truncated_texts": (after.truncations - before.truncations) // rounds,
        "batches": (after.batches - before.batches) // rounds,
        "naive_s": round(naive_s, 2),
        "optimised_s": round(opt_s, 2),
        "mflop_per_token": round(flop / 1e6, 1),
        "achieved_tflop_s": round(achieved, 3),
    }
    if peak_tflops:
        result["peak_tflop_s"] = peak_tflops
        result["flop_ceiling_share"] = round(achieved / peak_tflops, 4)
    if not skip_naive:
        naive = np.concatenate(naive_rows)
        result["naive_texts_per_s"] = round(n / naive_s, 1)
        result["speedup"] = round(texts_per_s / (n / naive_s), 2)
        result["min_cosine_naive_vs_optimised"] = round(
            float((naive * optimised).sum(axis=1).min()), 6
        )
    if onnx is not None:
        from encoder.onnx_export import cosine_summary, embed_reference

        reference = embed_reference(onnx[1], onnx[2], texts, encoder.max_len, per_text=True)
        result["onnx_texts_per_s"] = round(rounds * n / onnx_s, 1)
        result["onnx_vs_torch"] = round(opt_s / onnx_s, 2)
        for name, rows in (("torch", optimised), ("onnx", quantised)):
            stats = cosine_summary(reference, rows)
            result[f"cosine_to_float32_{name}_median_p1_min"] = [round(x, 5) for x in stats]
    return result


def _onnx_side(model: str, encoder: Any, cache_dir: Any) -> tuple[Any, Any, Any]:
    """The int8 ONNX encoder of ``model`` (made or read from ``cache_dir``) with the float32 model
    and tokenizer it came from, on the torch encoder's thread count."""
    from encoder.loading import load_pretrained
    from encoder.onnx_encoder import load_onnx_encoder

    net, tokenizer, _ = load_pretrained(model)
    quantised = load_onnx_encoder(
        model,
        encoder.threads,
        encoder.max_tokens_per_batch,
        encoder.max_len,
        0,
        cache_dir=cache_dir,
        version=encoder.version,
        loaded=(net, tokenizer),
    )
    return quantised, net, tokenizer


def default_peak_tflops(device_name: str) -> float | None:
    """Dense bf16 ceiling of known GPUs, in TFLOP/s (H200: the issue's figure, about 790)."""
    for key, value in (("H200", 790.0), ("H100", 790.0), ("A100", 312.0), ("L4", 121.0)):
        if key in device_name:
            return value
    return None


def run_encoder_bench(
    model: str,
    device: str = "auto",
    texts: int = 1000,
    threads: int = 0,
    max_tokens_per_batch: int = 8192,
    max_len: int = 128,
    seq_lens: Sequence[int] = (),
    rounds: int = 3,
    skip_naive: bool = False,
    peak_tflops: float | None = None,
    seed: int = 0,
    dtype: str = "auto",
    onnx: bool = False,
    onnx_cache_dir: Any = None,
    sample: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-ready report (see the module docstring). ``onnx``: also
    time the int8 ONNX Runtime encoder (CPU, varied lengths, a real model only), interleaved.
    ``sample``: these texts (e.g. a real catalogue's) instead of ``texts`` generated ones."""
    import torch
    import transformers

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    encoder = build_encoder(
        model,
        device,
        threads,
        max_tokens_per_batch,
        max(max_len, *seq_lens, 2),
        texts * 2,
        dtype,
    )
    load_s = time.perf_counter() - t0
    dev = encoder.device
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    if peak_tflops is None and dev.type == "cuda":
        peak_tflops = default_peak_tflops(device_name)
    report: dict[str, Any] = {
        "device": str(dev),
        "device_name": device_name or platform.machine(),
        "dtype": str(encoder.dtype).removeprefix("torch."),
        "model": model,
        "version": encoder.version,
        "random_weights": model == RANDOM_BERT_BASE,
        "texts": texts,
        "max_tokens_per_batch": encoder.max_tokens_per_batch,
        "max_len": encoder.max_len,
        "threads": encoder.threads,
        "cpu_count": os.cpu_count(),
    }
    if model == RANDOM_BERT_BASE:
        report["note"] = (
            "bert-base-sized BertConfig() with random weights: throughput only "
            "(FLOPs do not depend on the weights); embeddings are meaningless"
        )
    side = None
    if onnx and not seq_lens and dev.type == "cpu" and model != RANDOM_BERT_BASE:
        from encoder.onnx_encoder import OnnxRejected

        try:
            side = _onnx_side(model, encoder, onnx_cache_dir)
            report["onnx_threads"] = side[0].threads
        except OnnxRejected as e:
            report["onnx_rejected"] = str(e)
    if not seq_lens:
        encoder.max_len = max_len
        if side is not None:
            side[0].max_len = max_len
        chosen = list(sample) if sample is not None else product_texts(texts, seed)
        report |= _one_run(encoder, chosen, rounds, skip_naive, peak_tflops, side)
    else:
        runs = []
        for seq_len in seq_lens:
            encoder.max_len = seq_len
            run = _one_run(
                encoder, fixed_length_texts(texts, seq_len, seed), rounds, skip_naive, peak_tflops
            )
            runs.append({"seq_len": seq_len, **run})
        report["max_len"] = None
        if len(runs) == 1:
            report |= runs[0]
        else:
            report["runs"] = runs
            report["texts_per_s"] = {str(r["seq_len"]): r["texts_per_s"] for r in runs}
    report["load_s"] = round(load_s, 2)
    report["peak_rss_mb"] = peak_rss_mb()
    if dev.type == "cuda":
        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    report["loadavg_1m_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    report["torch"] = torch.__version__
    report["transformers"] = transformers.__version__
    return report
