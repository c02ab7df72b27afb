"""The items logic: a table in the project's database.

With nothing configured that database is a SQLite file, ``data/fastflyer.sqlite3``, which
every worker process of ``./start.sh`` shares; ``flyer_db_url`` moves it to a database
server (MySQL, PostgreSQL...). Nothing connects until the first request needs it.
"""

import threading

from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import DatabaseError

from fastflyer.database import get_mysql_pool

from .schema import Item, ItemIn

metadata = MetaData()
items = Table(
    "demo_items", metadata,
    Column("itemId", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("price", Float, nullable=False),
)


class ItemStore:
    """Items in the ``demo_items`` table (created on first use)."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = get_mysql_pool().engine   # no arguments: the project's database
                try:
                    metadata.create_all(engine)
                except DatabaseError:
                    # Another worker created the table between the check and the CREATE.
                    metadata.create_all(engine)
                self._engine = engine
            return self._engine

    def add(self, item: ItemIn) -> Item:
        with self.engine().begin() as connection:
            result = connection.execute(insert(items).values(**item.model_dump()))
        return Item(itemId=result.inserted_primary_key[0], **item.model_dump())

    def get(self, item_id: int) -> Item | None:
        with self.engine().connect() as connection:
            row = connection.execute(
                select(items).where(items.c.itemId == item_id)).mappings().first()
        return None if row is None else Item(**row)


store = ItemStore()
