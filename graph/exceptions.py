"""Errors of the graph package."""


class GraphError(Exception):
    """A graph write or query failed for a reason that is not transient."""
