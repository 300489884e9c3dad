"""`tastegraph tune-blend`: score blend weights offline on component lists that
`tastegraph evaluate --save-components FILE` saved, one or more data sets at once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "components",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="files written by `tastegraph evaluate --save-components` (one per data set)",
    )
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        metavar="NAME=V1,V2",
        help="weights to try for a component (every combination is scored); the others keep "
        "the configured blend weights (TASTEGRAPH_BLEND_WEIGHTS), which are scored first",
    )
    parser.add_argument("--top", type=int, default=20, help="print the best N weight sets (20)")
    parser.add_argument("--json", action="store_true", help="one JSON object per weight set")
    parser.add_argument(
        "--resamples",
        type=int,
        default=2000,
        help="bootstrap resamples of each shown weight set's gain over the configured (2000; 0: "
        "no interval)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from config.exceptions import ConfigError
    from evaluation.blend_search import gain_interval, grid, pair_ndcg, parse_axes, prepare, score
    from evaluation.components import read_components

    try:
        axes = parse_axes(args.grid)
    except ValueError as e:
        raise ConfigError(f"--grid: {e}") from e
    base = dict(settings.blend_weights)
    unknown = sorted(set(axes) - set(base))
    if unknown:
        raise ConfigError(f"--grid: unknown components {unknown}; known: {sorted(base)}")
    sets = {}
    for path in args.components:
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
        sets[path.name] = prepare(read_components(path))
    rows = []
    for weights in grid(base, axes):
        ndcg = {}
        for name, pairs in sets.items():
            figures = score(pairs, weights)
            ndcg[name] = next((v for key, v in figures.items() if key.startswith("ndcg@")), 0.0)
        rows.append((weights, ndcg))
    base_ndcg = rows[0][1]

    def ratios(ndcg: dict[str, float]) -> dict[str, float]:
        return {n: v / base_ndcg[n] if base_ndcg[n] > 0 else 0.0 for n, v in ndcg.items()}

    # ranked by the worst data set's ratio to the configured weights: a choice that helps one
    # set by hurting another ranks low
    order = sorted(rows, key=lambda r: (-min(ratios(r[1]).values()), -sum(r[1].values())))
    shown = [rows[0], *[r for r in order if r is not rows[0]][: max(0, args.top)]]
    base_pairs = (
        {name: pair_ndcg(pairs, base) for name, pairs in sets.items()} if args.resamples > 0 else {}
    )

    def intervals(weights: dict[str, float]) -> dict[str, Any]:
        """Per file, the paired bootstrap (over users) of the gain over the configured weights."""
        if args.resamples < 1 or weights == base:
            return {}
        return {
            name: gain_interval(
                pairs, base_pairs[name], pair_ndcg(pairs, weights), args.resamples
            ).to_json()
            for name, pairs in sets.items()
        }

    for n, (weights, ndcg) in enumerate(shown):
        ci = intervals(weights)
        if args.json:
            record = {"weights": weights, "ndcg": ndcg, "x_configured": ratios(ndcg)}
            if ci:
                record["gain_ci"] = ci
            print(orjson.dumps(record).decode())
            continue
        label = "configured" if n == 0 else f"#{n}"
        changed = {k: v for k, v in weights.items() if v != base.get(k)}
        cells = "  ".join(
            f"{name} {v:.4f} ({ratios(ndcg)[name]:.3f}x"
            + (f" [{ci[name]['lower']:+.4f}, {ci[name]['upper']:+.4f}]" if name in ci else "")
            + ")"
            for name, v in ndcg.items()
        )
        what = ",".join(f"{k}={v:g}" for k, v in changed.items()) or ",".join(
            f"{k}={v:g}" for k, v in weights.items()
        )
        print(f"{label:<11} {cells}  {what}")
    return 0
