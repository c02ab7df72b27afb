"""Inputs and outputs of the items app."""

from pydantic import BaseModel, Field


class ItemIn(BaseModel):
    """An item to create."""

    name: str = Field(min_length=1, max_length=64, description="Item name")
    price: float = Field(ge=0, description="Unit price")


class Item(ItemIn):
    """A stored item."""

    itemId: int = Field(description="Item id")  # noqa: N815 (the wire name)
