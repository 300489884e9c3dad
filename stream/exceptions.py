"""Errors of the stream worker."""

from config.exceptions import TastegraphError


class InvalidEvent(TastegraphError):
    """An event breaks the contract; ``reason`` is a short stable label for metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class OffsetsError(TastegraphError):
    """The group's offsets cannot be shown or moved (group active, topic missing, no Kafka)."""
