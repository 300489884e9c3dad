"""The `tastegraph` command line: cli/main.py, and one module per command."""
