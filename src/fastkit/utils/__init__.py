"""Small utilities: the ``env`` accessor, hashing and random strings, the host's address.

    from fastkit.utils import env
    env.get("flyer_port", "8080")      # like os.environ.get
    env.flyer_port or "8080"            # unset reads as an empty, falsy string
    env.flyer_port["8080"]              # default in brackets
    env.flyer_port("8080")              # default as a call
"""

from __future__ import annotations

from fastkit.utils.env import Env, EnvValue, env
from fastkit.utils.net import get_host_ip
from fastkit.utils.text import get_md5, get_random_str

__all__ = ["Env", "EnvValue", "env", "get_host_ip", "get_md5", "get_random_str"]
