"""User models."""

from pydantic import BaseModel, Field


class User(BaseModel):
    """A user."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    age: int = Field(ge=0, le=150, strict=True)  # strict: true/false or "7" are no age
