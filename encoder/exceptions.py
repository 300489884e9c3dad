"""Errors of the encoder package."""


class EncoderError(Exception):
    """The encoder could not load a model or encode a batch."""


class ModelNotFound(EncoderError):
    """No model at the given path or installed package."""
