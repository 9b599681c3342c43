"""The version, written once: the installed distribution's metadata (``pyproject.toml``)."""

from __future__ import annotations

from importlib import metadata

#: the distribution name on PyPI (``gradflow`` there is an unrelated project); the import name is gradflow
DISTRIBUTION = "gradflow-rnn"

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
