"""What every handler needs, built once per process by the composition root (`consumers.app`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.base import AIProvider
from shared.automation_logger import AutomationLogger, RunRef
from shared.catalogue import Stage
from shared.outbox import ReservedRow
from shared.settings import Settings


class Relay(Protocol):
    """The process's outbox relay (`shared.outbox.OutboxRelay`), as the handlers use it: woken after a
    commit that wrote outbox rows, sending the rows a batch finish reserved for it, and handing the
    sent ones to a claim that deletes them."""

    reserve_seconds: float

    def wake(self) -> None: ...

    async def send_reserved(self, rows: Sequence[ReservedRow]) -> None: ...

    def take_sent_ids(self) -> str: ...

    def put_back_sent_ids(self, ids: str) -> None: ...


@dataclass
class Deps:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    logger: AutomationLogger
    provider: AIProvider
    relay: Relay
    worker_id: str
    # Batch messages the consumers of this process's stage hold at once, over every replica (RabbitMQ's
    # consumer count times the prefetch), recounted every few seconds (`consumers.app`); 0: not known.
    # The runs running share it as their windows (`consumers.planning.shared_slots`).
    consumer_slots: int = 0


@dataclass(frozen=True)
class BatchContext:
    """Who a batch belongs to; handed to a stage's `write`."""

    run: RunRef
    batch_id: int
    stage: int
    settings: Settings

    @property
    def site_id(self) -> int:
        return self.run.site_id


@dataclass
class Written:
    """What a batch wrote: outputs created, credits to charge, and the ids of the items it made for the
    next stage, which a streamed run hands on as that stage's batches in the same transaction."""

    items_out: int
    credits: int
    handed_on: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LoadInClaim:
    """A stage's `load` done by the claim's own statement (`consumers.batches.claim_batch`): a round
    trip less for each batch, for the stages whose batches are many and small."""

    sql: str  # a scalar subquery over `claimed` (its item_ids and site_id): the inputs as JSON
    decode: Callable[[Any], Any]  # that JSON as `load` returns it


class StageWork(Protocol):
    """One stage's logic, free of transport: the seed's query, the AI call, the writes."""

    stage: Stage  # its entry in the catalogue: number, names, rates
    # A run of more items than this works through the stage's batches one at a time (a window of one),
    # each batch seeing what the ones before it wrote, so the result does not depend on concurrency or
    # timing (None: never). Stage 1 above the keywords its consolidation takes: below, the consolidation
    # makes the result independent of the batches' order, and they run at any concurrency.
    sequential_above: int | None
    load_in_claim: LoadInClaim | None  # None: `load` runs after the claim, in a statement of its own

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> Any:
        """The batch's inputs, re-checked for eligibility (None or empty: nothing to do)."""
        ...

    async def generate(self, deps: Deps, inputs: Any) -> Any:
        """The AI call (outside any transaction)."""
        ...

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: Any, outputs: Any) -> Written:
        """Write the outputs inside the batch transaction; constraints reject duplicates."""
        ...


@runtime_checkable
class LoadsGroups(Protocol):
    """A stage whose batches claimed together (`consumers.batches.ClaimGroups`) load their inputs in
    one statement, right after their claim: for the stages of many small batches that load after the
    claim, where a statement and a pooled connection per batch were much of what a batch cost."""

    async def load_group(self, session: AsyncSession, site_id: int, batches: Sequence[list[int]]) -> list[Any]:
        """`load` for each batch's item ids (all of one site), in the same order."""
        ...


@runtime_checkable
class WritesGroups(Protocol):
    """A stage whose batches finishing together (a group commit, `consumers.batches.FinishGroups`)
    write their outputs in one go: for the stages of many small batches, where a statement per batch
    was most of what a batch cost."""

    async def write_group(self, session: AsyncSession, batches: Sequence[tuple[BatchContext, Any, Any]]
                          ) -> list[Written]:
        """`write` for each (context, inputs, outputs) of one run's stage, in the same order, with the
        same effects as writing them one by one."""
        ...
