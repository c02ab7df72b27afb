"""FastKit: the toolkit under FastFlyer."""

from fastkit._version import __version__

__all__ = ["__version__"]
