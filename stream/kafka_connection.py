"""How every Kafka client of tastegraph connects: one home for the address and the security options.

``client_options`` gives the keyword arguments of aiokafka's producers, consumers and admin client;
``faust_credentials`` the same options as Faust's ``broker_credentials`` (Faust hands them to the
aiokafka clients it makes: the consumer, the producer that also sends dead letters, its admin
client). Both read the KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* settings, so a worker,
`record`, `replay`, `offsets` and the benchmarks connect the same way.
"""

from __future__ import annotations

import ssl
from typing import Any

from config.exceptions import ConfigError
from config.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None for the plaintext protocols): the system's CAs or
    KAFKA_SSL_CAFILE, hostname checked unless KAFKA_SSL_CHECK_HOSTNAME=false, and the client
    certificate of KAFKA_SSL_CERTFILE/KEYFILE when given."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(
            f"KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile} holds no usable CA certificate: {e}."
        ) from e
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password.get_secret_value() or None
        try:
            context.load_cert_chain(
                settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile, password=password
            )
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(
                f"KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile} and KAFKA_SSL_KEYFILE="
                f"{settings.kafka_ssl_keyfile} do not load as a certificate and its key (is "
                f"KAFKA_SSL_KEY_PASSWORD right?): {e}."
            ) from e
    return context


def security_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's security keyword arguments (``security_protocol``, ``ssl_context``, SASL)."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: the servers and the security options."""
    return {"bootstrap_servers": settings.kafka_servers, **security_options(settings)}


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the same options (None: plaintext)."""
    from faust.auth import SASLCredentials, SSLCredentials

    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol.startswith("SASL_"):
        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,  # SASL_SSL with a context, SASL_PLAINTEXT without
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


def describe(settings: Settings) -> str:
    """How the clients connect, for messages: ``"k1:9093 (SASL_SSL, SCRAM-SHA-512 as 'svc')"``."""
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        how = f"{protocol}, {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username!r}"
    else:
        how = protocol
    return f"{settings.kafka_servers} ({how})"
