"""The items logic: an in-memory store (replace it with your database)."""

import itertools
import threading

from .schema import Item, ItemIn


class ItemStore:
    """Items kept in memory, safe across threads."""

    def __init__(self) -> None:
        self._items: dict[int, Item] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, item: ItemIn) -> Item:
        with self._lock:
            stored = Item(itemId=next(self._ids), **item.model_dump())
            self._items[stored.itemId] = stored
            return stored

    def get(self, item_id: int) -> Item | None:
        return self._items.get(item_id)


store = ItemStore()
