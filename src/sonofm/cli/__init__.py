"""Command-line interface: one module per command group, dispatched from :mod:`sonofm.cli.main`."""
