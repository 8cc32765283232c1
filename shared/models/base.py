"""The declarative base and what every model module shares: status vocabularies and timestamps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ACTIVE_RUN_STATUSES = ("running", "paused")
# review -> approved -> published, or rejected; publish_failed until a publish succeeds.
CONTENT_STATUSES = ("draft", "review", "approved", "rejected", "published", "publish_failed")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def created_column() -> Mapped[datetime]:
    """A `created_at` column the database fills (its clock, not the host's)."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
