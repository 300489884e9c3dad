"""The stream layer: the Faust app, the `tastegraph` CLI and the settings object."""

__version__ = "0.1.0"
