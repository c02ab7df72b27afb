"""``env``: environment variables read four ways, set or not.

The original API documents four forms; all of them work here for a variable that is
set and for one that is not:

    >>> import os
    >>> os.environ["demo_set"] = "42"
    >>> os.environ.pop("demo_unset", None)
    >>> env.get("demo_set", "d"), env.get("demo_unset", "d")
    ('42', 'd')
    >>> env.demo_set or "d", env.demo_unset or "d"
    ('42', 'd')
    >>> env.demo_set["d"], env.demo_unset["d"]
    ('42', 'd')
    >>> env.demo_set("d"), env.demo_unset("d")
    ('42', 'd')

A set value *is* its string (``env.demo_set == "42"``, ``int(env.demo_set) == 42``);
an unset one is an empty string whose ``is_set`` is ``False``. Nothing is cached: every
access reads ``os.environ`` at that moment.
"""

from __future__ import annotations

import os
from typing import SupportsIndex, overload

__all__ = ["Env", "EnvValue", "env"]


class EnvValue(str):
    """The value of one variable: a ``str`` that also takes a default.

    ``value("d")`` and ``value["d"]`` give the value when the variable is set and
    ``"d"`` when it is not. Integer and slice subscripts index the string as usual.
    """

    __slots__ = ("is_set", "name")

    name: str
    is_set: bool

    def __new__(cls, name: str, value: str | None) -> EnvValue:
        self = super().__new__(cls, "" if value is None else value)
        self.name = name
        self.is_set = value is not None
        return self

    def __call__(self, default: str | None = None) -> str | None:
        return str(self) if self.is_set else default

    @overload
    def __getitem__(self, key: SupportsIndex | slice) -> str: ...
    @overload
    def __getitem__(self, key: str) -> str: ...
    def __getitem__(self, key: SupportsIndex | slice | str) -> str:
        if isinstance(key, str):
            return str(self) if self.is_set else key
        return str.__getitem__(self, key)

    def __repr__(self) -> str:
        return f"EnvValue({self.name!r}, {str(self) if self.is_set else None!r})"


class Env:
    """Attribute and ``get`` access to ``os.environ``."""

    def get(self, name: str, default: str | None = None) -> str | None:
        """``os.environ.get(name, default)``."""
        return os.environ.get(name, default)

    def __getattr__(self, name: str) -> EnvValue:
        if name.startswith("__"):
            raise AttributeError(name)
        return EnvValue(name, os.environ.get(name))

    def __getitem__(self, name: str) -> EnvValue:
        return EnvValue(name, os.environ.get(name))

    def __contains__(self, name: object) -> bool:
        return name in os.environ

    def __repr__(self) -> str:
        return "<fastkit.utils.env: os.environ>"


env = Env()
