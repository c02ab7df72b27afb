"""Small utilities: the ``env`` accessor, hashing and random strings, the host's address,
blocking calls awaited on daemon threads.

    from fastkit.utils import env
    env.get("flyer_port", "8080")      # like os.environ.get
    env.flyer_port or "8080"            # unset reads as an empty, falsy string
    env.flyer_port["8080"]              # default in brackets
    env.flyer_port("8080")              # default as a call

    from fastkit.utils import run_in_daemon_thread
    await run_in_daemon_thread(blocking_call)   # like asyncio.to_thread; never delays exit
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastkit._lazy import lazy_exports
from fastkit.utils.env import Env, EnvValue, env
from fastkit.utils.net import get_host_ip
from fastkit.utils.text import get_md5, get_random_str

if TYPE_CHECKING:
    from fastkit.utils.threads import run_in_daemon_thread

__all__ = ["Env", "EnvValue", "env", "get_host_ip", "get_md5", "get_random_str",
           "run_in_daemon_thread"]

# asyncio loads with the first use of this name, not with the package.
__getattr__ = lazy_exports(__name__, globals(), {"run_in_daemon_thread": ".threads"})
