"""`tastegraph models list | current | rollback [VERSION] | promote VERSION`: the encoder registry.

Versions live under ``$TASTEGRAPH_HOME/models`` (see `encoder.registry`). ``rollback`` without a
version goes back to the current version's parent; workers pick the change up without a restart.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from config.exceptions import ConfigError
from config.settings import Settings

if TYPE_CHECKING:
    from encoder.registry import ModelRegistry


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="every version, its status and metrics")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    sub.add_parser("current", help="print the current version and where its weights are")
    p = sub.add_parser("rollback", help="make an earlier version current")
    p.add_argument("version", nargs="?", help="version to go back to (default: current's parent)")
    p = sub.add_parser("promote", help="make a candidate or earlier promoted version current")
    p.add_argument("version")


def _fmt(m: object, key: str) -> str:
    return f"{m[key]:.4f}" if isinstance(m, dict) and key in m else "-"


def _fmt_ci(ci: object) -> str:
    """The gate's paired-bootstrap interval of the NDCG@10 gain, ``[lower, upper]``."""
    if not isinstance(ci, dict) or "lower" not in ci:
        return "-"
    return f"[{ci['lower']:+.4f},{ci['upper']:+.4f}]"


def _print_serving(registry: ModelRegistry, current: str) -> None:
    """What each worker really runs, from its last report (`encoder.serving.report_serving`)."""
    from encoder.serving import serving_reports

    for r in serving_reports(registry):
        if r.in_step and r.wanted == current:
            print(f"  worker {r.worker}: serving {r.serving} ({r.updated_at})")
            continue
        serving = r.serving or "a model outside the registry (the base model)"
        line = f"  worker {r.worker}: serving {serving}, asked for {r.wanted} ({r.updated_at})"
        if r.error:
            line += f"; {r.failures} failed load(s), last: {r.error}"
        print(line)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from encoder.registry import RegistryError
    from finetuning.stores import registry_for

    registry = registry_for(settings)
    current = registry.current_version()
    try:
        if args.action == "list":
            versions = registry.list()
            if args.json:
                for v in versions:
                    d = {**v.metadata, "current": v.version == current, "path": v.model_ref}
                    print(orjson.dumps(d).decode())
                return 0
            print(
                f"{'':1} {'VERSION':<9} {'STATUS':<9} {'PARENT':<9} {'EXAMPLES':>8} "
                f"{'HR@10 before':>12} {'after':>7} {'NDCG@10 before':>14} {'after':>7} "
                f"{'gain CI':>19}  CREATED"
            )
            for v in versions:
                m0, m1 = v.metadata.get("metrics_before"), v.metadata.get("metrics_after")
                print(
                    f"{'*' if v.version == current else ' '} {v.version:<9} {v.status:<9} "
                    f"{v.parent_version or '-':<9} {v.metadata.get('examples', 0):>8} "
                    f"{_fmt(m0, 'hr_at_10'):>12} {_fmt(m1, 'hr_at_10'):>7} "
                    f"{_fmt(m0, 'ndcg_at_10'):>14} {_fmt(m1, 'ndcg_at_10'):>7} "
                    f"{_fmt_ci(v.metadata.get('gain_ci')):>19}  "
                    f"{v.metadata.get('created_at', '')}"
                )
            return 0
        if args.action == "current":
            info = registry.current()
            print(f"{info.version}\t{info.model_ref}")
            _print_serving(registry, info.version)
            return 0
        if args.action == "rollback":
            info = registry.rollback(args.version)
            print(f"current: {info.version} (was {current})")
            return 0
        if args.action == "promote":
            info = registry.promote(args.version)
            print(f"current: {info.version} (was {current})")
            return 0
    except RegistryError as e:
        raise ConfigError(str(e)) from e
    raise ConfigError(f"unknown action {args.action}")
