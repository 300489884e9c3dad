"""graph/ imports nothing of Kafka or torch (and the driver only where a caller passes one in)."""

from __future__ import annotations

import subprocess
import sys


def test_graph_package_imports_no_kafka_and_no_torch() -> None:
    code = (
        "import sys, graph.store, graph.reads, graph.dump, graph.queries, graph.decay, graph.fold;"
        "print(sorted(m for m in ('torch', 'faust', 'aiokafka', 'kafka', 'transformers', 'neo4j')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
