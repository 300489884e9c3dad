"""One module per `tastegraph` command; see stream/cli.py."""
