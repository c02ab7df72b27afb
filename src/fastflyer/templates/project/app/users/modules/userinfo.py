"""User records, kept in memory (replace with your database)."""

import threading

from ..schemas.userinfo import User

_users: dict[str, User] = {}
_lock = threading.Lock()


def save_user(user: User) -> User:
    with _lock:
        _users[user.name] = user
    return user


def list_users(offset: int, size: int) -> tuple[list[User], int]:
    with _lock:
        users = sorted(_users.values(), key=lambda u: u.name)
    return users[offset:offset + size], len(users)
