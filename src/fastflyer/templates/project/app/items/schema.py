"""Inputs and outputs of the items app."""

from pydantic import BaseModel, Field

# Ids are stored as 64-bit integers: a larger one is a 422, never a database error.
MAX_ID = 2**63 - 1


class ItemIn(BaseModel):
    """An item to create."""

    name: str = Field(min_length=1, max_length=64, description="Item name")
    # allow_inf_nan=False: JSON cannot write infinity or NaN, so 1e999, "Infinity" and "NaN"
    # would be stored and then answered as null, which this schema (a number) refuses: a 422.
    # strict=True: a number only (an int is one); true/false or "3" would be turned into one.
    price: float = Field(ge=0, allow_inf_nan=False, strict=True, description="Unit price")


class Item(ItemIn):
    """A stored item."""

    itemId: int = Field(ge=1, le=MAX_ID, description="Item id")  # noqa: N815 (the wire name)
