"""`tastegraph services up | down | status`: the local Kafka and Neo4j (see services/).

The arguments and the action live in services/command.py, which `python -m services` uses too.
"""

from services.command import configure, run

__all__ = ["configure", "run"]
