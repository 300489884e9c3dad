"""Errors of the stream layer. Each package has its own small exceptions module."""


class TastegraphError(Exception):
    """Root of the errors tastegraph raises on purpose."""


class ConfigError(TastegraphError):
    """A setting is missing or malformed; the message names the environment variable."""


class ServicesError(TastegraphError):
    """The local Kafka or Neo4j could not be installed, started or reached."""


class InvalidEvent(TastegraphError):
    """An event breaks the contract; ``reason`` is a short stable label for metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
