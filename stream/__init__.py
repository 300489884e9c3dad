"""The stream worker: the Faust app, batch processing, validation, topics, metrics, model swap."""

__version__ = "0.1.0"
