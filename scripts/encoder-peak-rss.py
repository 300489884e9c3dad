"""Peak RSS of a process that only opens the worker's encoder and encodes 128 short texts.

    TASTEGRAPH_ENCODER_BACKEND=onnx python scripts/encoder-peak-rss.py

Opens the encoder as the worker does (``stream.runtime.open_encoder(Settings.from_env())``) and
prints one JSON line: the backend, the version, whether torch was imported, the load time and the
process's peak RSS (``ru_maxrss``). RSS does not depend on the machine's load; the load average is
printed anyway, as the project's figures always say it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from config.settings import Settings
from stream.runtime import open_encoder


def main() -> int:
    started = time.perf_counter()
    encoder = open_encoder(Settings.from_env())
    load_s = time.perf_counter() - started
    texts = [f"WHITE HANGING HEART T-LIGHT HOLDER {i}" for i in range(128)]
    encoder.encode(texts)
    report = {
        "backend": getattr(encoder, "backend", type(encoder).__name__),
        "version": encoder.version,
        "torch_imported": "torch" in sys.modules,
        "load_s": round(load_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
