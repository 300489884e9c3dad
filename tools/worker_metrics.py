"""Reading a running worker's /metrics: a scrape summed by name, and a histogram's quantile over the
increase between two scrapes (what the pipeline benchmark and the integration tests measure with).
"""

from __future__ import annotations

import urllib.request


def scrape(port: int) -> dict[str, float]:
    """Sums every sample of the worker's /metrics by `name{labels}` (no labels: by name)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name
            if "le" in s.labels:
                key += f"|{s.labels['le']}"
            elif "stage" in s.labels:
                key += f"|{s.labels['stage']}"
            out[key] = out.get(key, 0.0) + s.value
    return out


def histogram_quantile(
    q: float, before: dict[str, float], after: dict[str, float], name: str
) -> float:
    """Prometheus' histogram_quantile over the increase of a histogram between two scrapes."""
    buckets = []
    for key, value in after.items():
        if key.startswith(f"{name}_bucket|"):
            le = float(key.split("|", 1)[1])
            buckets.append((le, value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 1.0)
        prev_le, prev_count = le, count
    return prev_le
