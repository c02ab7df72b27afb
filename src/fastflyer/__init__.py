"""FastFlyer: a batteries-included API framework on FastAPI.

The framework lands with its own issue; this package is its shell.
"""
