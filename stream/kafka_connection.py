"""How every Kafka client of tastegraph connects: one home for the address and the security options.

``client_options`` gives the keyword arguments of aiokafka's producers, consumers and admin client;
``faust_credentials`` the same options as Faust's ``broker_credentials`` (Faust hands them to the
aiokafka clients it makes: the consumer, the producer that also sends dead letters, its admin
client). Both read the KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* settings, so a worker,
`record`, `replay`, `offsets` and the benchmarks connect the same way.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from config.exceptions import ConfigError, ServicesError
from config.settings import Settings

CHECK_TIMEOUT_S = 15.0


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


async def check_connection(settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Connects (and logs in) to the bootstrap servers until one accepts; otherwise raises
    `ServicesError` with one sentence that names the cause and the settings to check. aiokafka's
    clients only say "Unable to bootstrap" and log the cause; this says it."""
    from aiokafka.conn import create_conn

    options = security_options(settings)
    first: BaseException | None = None
    for server in settings.kafka_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=int(timeout_s * 1000),
                    **options,
                ),
                timeout_s,
            )
        except Exception as e:  # the cause of each server's failure; the first one is reported
            first = first or e
            continue
        conn.close()
        return
    assert first is not None
    raise ServicesError(failure_sentence(settings, first)) from first


def failure_sentence(settings: Settings, error: BaseException) -> str:
    """Why the clients cannot use Kafka, in one sentence with the settings to check."""
    from aiokafka import errors

    where = f"Kafka at {describe(settings)}"
    reason = str(error).strip().rstrip(".") or type(error).__name__
    if isinstance(error, errors.SaslAuthenticationFailed | errors.AuthenticationFailedError):
        return (
            f"{where} refused the login: authentication failed; check KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD(_FILE) and KAFKA_SASL_MECHANISM."
        )
    if isinstance(error, errors.UnsupportedSaslMechanismError):
        return f"{where} does not offer this SASL mechanism: check KAFKA_SASL_MECHANISM ({reason})."
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"{where}: the broker's TLS certificate is not trusted ({error.verify_message}); check "
            "KAFKA_SSL_CAFILE (and KAFKA_SSL_CHECK_HOSTNAME)."
        )
    if isinstance(error, ssl.SSLError):
        return (
            f"{where}: the TLS handshake failed ({reason}); does the listener speak "
            "KAFKA_SECURITY_PROTOCOL?"
        )
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return (
            f"{where} did not answer within the timeout: is KAFKA_BOOTSTRAP_SERVERS right, and "
            "does the listener speak KAFKA_SECURITY_PROTOCOL?"
        )
    return f"cannot reach {where}: {type(error).__name__}: {reason}."
