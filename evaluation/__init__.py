"""Offline evaluation, protocol v1 (next-day discovery): see docs/evaluation.md.

Pure parts (no I/O): ``protocol`` (day split, (user, day) pairs), ``metrics``, ``baselines``,
``ease``.
``data`` reads the input files, ``runner`` builds the graph and asks the queries, ``report``
renders HTML.
"""

PROTOCOL_VERSION = "v1"
BASELINES = ("popular", "cooccurrence", "ease")
GRAPH_STRATEGIES = ("content", "profile", "collaborative", "co_engaged", "blend")
ALL_STRATEGIES = BASELINES + GRAPH_STRATEGIES
