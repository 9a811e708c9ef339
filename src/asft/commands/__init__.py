"""The `asft` subcommands, one module each, registered by :mod:`asft.cli`."""
