"""Who follows whom, kept in memory."""

import threading
from collections import defaultdict

_following: dict[str, set[str]] = defaultdict(set)
_lock = threading.Lock()


def follow(user: str, other: str) -> list[str]:
    with _lock:
        _following[user].add(other)
        return sorted(_following[user])


def following(user: str) -> list[str]:
    with _lock:
        return sorted(_following.get(user, ()))
