"""One module per ``asft`` subcommand; see :mod:`asft.cli`."""
