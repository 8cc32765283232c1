"""SQLAlchemy models: the seed's content objects, the run bookkeeping and the outbox.

Constraints here are what makes duplicate outputs impossible even under races: a keyword
has one cluster column, a task one content (unique), an image one slot per content
position (unique), a batch one ledger row (unique), a site one active run (partial unique).

One module per area (accounts, content, runs, publishing, notifications); everything is importable
from `shared.models`, and importing it registers every table on `Base.metadata` (Alembic and the
tests need all of them).
"""

from __future__ import annotations

from shared.models.accounts import Account, ApiKey, AutomationConfig, Site
from shared.models.base import ACTIVE_RUN_STATUSES, CONTENT_STATUSES, Base
from shared.models.content import Cluster, Content, ContentChange, ContentIdea, Image, Keyword, Task
from shared.models.notifications import (
    DELIVERY_STATUSES,
    NOTIFICATION_CHANNEL_KINDS,
    Notification,
    NotificationChannel,
    NotificationDelivery,
)
from shared.models.publishing import Publication, PublishTarget
from shared.models.runs import (
    AutomationRun,
    CreditLedger,
    OutboxMessage,
    RunLogLine,
    RunRejection,
    RunStage,
    ScheduleSlot,
    StageBatch,
)

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "CONTENT_STATUSES",
    "DELIVERY_STATUSES",
    "NOTIFICATION_CHANNEL_KINDS",
    "Account",
    "ApiKey",
    "AutomationConfig",
    "AutomationRun",
    "Base",
    "Cluster",
    "Content",
    "ContentChange",
    "ContentIdea",
    "CreditLedger",
    "Image",
    "Keyword",
    "Notification",
    "NotificationChannel",
    "NotificationDelivery",
    "OutboxMessage",
    "Publication",
    "PublishTarget",
    "RunLogLine",
    "RunRejection",
    "RunStage",
    "ScheduleSlot",
    "Site",
    "StageBatch",
    "Task",
]
