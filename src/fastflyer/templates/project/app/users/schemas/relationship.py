"""Relationship models."""

from pydantic import BaseModel, Field


class Follow(BaseModel):
    """Follow another user."""

    other: str = Field(min_length=1, max_length=32)
