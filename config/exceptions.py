"""The root of tastegraph's errors and the errors of configuration and the local services.

Each package keeps its own small exceptions module; every error tastegraph raises on purpose
derives from :class:`TastegraphError`.
"""


class TastegraphError(Exception):
    """Root of the errors tastegraph raises on purpose."""


class ConfigError(TastegraphError):
    """A setting is missing or malformed; the message names the environment variable."""


class ServicesError(TastegraphError):
    """The local Kafka or Neo4j could not be installed, started or reached."""
