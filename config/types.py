"""The value types of the settings: pydantic constraints, and one sentence per refused value.

Each constrained type says what it allows in words (``describe``), so a refusal names the variable,
the value and the allowed range in one sentence, whichever layer (environment, CLI flag, code)
supplied the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from config.exceptions import ConfigError


@dataclass(frozen=True)
class Rule:
    """``Annotated`` metadata: what a type allows, in words (for the refusal's sentence)."""

    text: str


# --- numbers ----------------------------------------------------------------------------------

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Port = Annotated[int, Field(ge=1, le=65535)]
ListenPort = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


def _bool(value: Any) -> Any:
    """true/false, 1/0 (and yes/no, on/off), any case; pydantic's own rules for the rest."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError("not a boolean")
    return value


Flag = Annotated[bool, BeforeValidator(_bool), Rule("true or false (or 1/0)")]

# --- names --------------------------------------------------------------------------------------

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DATABASE = re.compile(r"[A-Za-z][A-Za-z0-9.-]{2,62}")
_SERVER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s,:\[\]]+):\d{1,5}")
_NEO4J_SCHEMES = ("neo4j", "neo4j+s", "neo4j+ssc", "bolt", "bolt+s", "bolt+ssc")


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(what)
        return value

    return AfterValidator(check)


def _topic(value: str) -> str:
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise ValueError("not a Kafka topic name")
    return value


TopicName = Annotated[
    str,
    AfterValidator(_topic),
    Rule("a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"),
]
GroupId = Annotated[
    str,
    _matching(_TOPIC, "not a Kafka consumer group id"),
    Rule("a Kafka consumer group id (letters, digits, '.', '_', '-')"),
]
DatabaseName = Annotated[
    str,
    _matching(_DATABASE, "not a Neo4j database name"),
    Rule("a Neo4j database name (a letter, then letters, digits, '.', '-'; 3-63)"),
]
Word = Annotated[
    str,
    _matching(re.compile(r"\S+"), "empty or has spaces"),
    Rule("a non-empty value without spaces"),
]
OptionalWord = Annotated[
    str, _matching(re.compile(r"\S*"), "has spaces"), Rule("empty or a value without spaces")
]


def _servers(value: str) -> str:
    parts = [p.strip() for p in value.split(",")]
    if value and not all(_SERVER.fullmatch(p) and int(p.rsplit(":", 1)[1]) <= 65535 for p in parts):
        raise ValueError("not a host:port list")
    return ",".join(parts)


def _neo4j_uri(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if value and (not sep or scheme not in _NEO4J_SCHEMES or not rest):
        raise ValueError("not a Neo4j URI")
    return value


BootstrapServers = Annotated[
    str, AfterValidator(_servers), Rule("empty or a comma-separated list of host:port")
]
Neo4jUri = Annotated[
    str,
    AfterValidator(_neo4j_uri),
    Rule(f"empty or a URI with a scheme among {', '.join(_NEO4J_SCHEMES)}"),
]


def _device(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError("not a device")


Device = Annotated[str, AfterValidator(_device), Rule("auto, cpu, cuda or cuda:N")]


def _home(value: Path) -> Path:
    value = value.expanduser()
    if value.exists() and not value.is_dir():
        raise ValueError("not a directory")
    return value


Home = Annotated[Path, AfterValidator(_home), Rule("a directory (created when missing)")]


def _file(value: str) -> str:
    if value and not Path(value).expanduser().is_file():
        raise ValueError("no such file")
    return str(Path(value).expanduser()) if value else value


OptionalFile = Annotated[str, AfterValidator(_file), Rule("empty or the path of an existing file")]


def _secret(value: SecretStr) -> SecretStr:
    if any(ord(c) < 32 for c in value.get_secret_value()):
        raise ValueError("has control characters")
    return value


Secret = Annotated[SecretStr, AfterValidator(_secret), Rule("a text without control characters")]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Upper = BeforeValidator(_upper)

# --- lists and maps -----------------------------------------------------------------------------


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


def _event_types(value: tuple[str, ...]) -> tuple[str, ...]:
    bad = [v for v in value if not _EVENT_TYPE.fullmatch(v)]
    if bad or len(set(value)) != len(value):
        raise ValueError("not a list of event type names")
    return value


EventTypes = Annotated[
    tuple[str, ...],
    BeforeValidator(_split),
    AfterValidator(_event_types),
    Rule("a comma-separated list of distinct lower-case names (letters, digits, '_')"),
]


def _pairs(value: Any) -> Any:
    """``"click=2, browse=1"`` -> ``{"click": 2.0, "browse": 1.0}`` (a mapping passes as it is)."""
    if not isinstance(value, str):
        return value
    out: dict[str, Any] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        key, sep, number = part.partition("=")
        if not sep or not key.strip():
            raise ValueError("not a list of name=number pairs")
        out[key.strip()] = number.strip()
    return out


def _finite(value: Mapping[str, float]) -> dict[str, float]:
    if not all(math.isfinite(v) for v in value.values()):
        raise ValueError("not finite")
    return dict(value)


Weights = Annotated[
    Mapping[str, float],
    BeforeValidator(_pairs),
    AfterValidator(_finite),
    Rule("comma-separated name=number pairs"),
]

# --- the sentence -------------------------------------------------------------------------------

_KINDS: dict[object, str] = {
    int: "a whole number",
    float: "a number",
    bool: "true or false (or 1/0)",
    str: "a text",
}


def describe(info: FieldInfo) -> str:
    """``info``'s allowed values in words: ``"a whole number >= 1"``, ``"one of a, b"``."""
    rules = [meta.text for meta in info.metadata if isinstance(meta, Rule)]
    if rules:
        return rules[-1]
    if get_origin(info.annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(info.annotation))
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(meta, attr, None)
            if bound is not None and isinstance(meta, annotated_types.BaseMetadata):
                bounds.append(f"{sign} {bound:g}")
    kind = _KINDS.get(info.annotation, "a valid value")
    return kind + (" " + " and ".join(bounds) if bounds else "")


def config_error(
    error: ValidationError,
    fields: Mapping[str, FieldInfo],
    env: Mapping[str, str],
    secrets: set[str],
) -> ConfigError:
    """One sentence for the first refused value: variable, value (masked when secret), rule."""
    detail = error.errors()[0]
    name = str(detail["loc"][0]) if detail["loc"] else ""
    if name not in fields:
        return ConfigError(f"invalid settings: {detail['msg']}")
    value = "**********" if name in secrets else _show(detail.get("input"))
    if len(detail["loc"]) > 1:  # one entry of a mapping or list
        value = f"{value} ({detail['loc'][1]}: {detail['msg'].lower()})"
    return ConfigError(f"{env[name]}={value} is not allowed: it must be {describe(fields[name])}.")


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return str(value)
