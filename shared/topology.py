"""Broker topology: one topic exchange, a durable queue per consumer, dead letters, retry delays.

Everything is named from the settings' `queue_prefix`, so test runs and deployments that
share a vhost never see each other's messages. Retries go through delay queues (a queue TTL
per tier, dead-lettered back to the main exchange), which works the same on RabbitMQ 3.10
and 4.x and never requeues in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from shared.catalogue import BATCH_STAGES, STAGE_NUMBERS
from shared.settings import Settings

# RabbitMQ's headers exchange ignores every header whose name begins with "x-" when it matches, so
# the tier header must not have that prefix: with it, every delay queue's binding matched every
# retry and each retry was copied into every tier (4, 16, 64 ... copies). The old name is unbound at
# declaration so a broker upgraded in place stops copying too.
RETRY_TIER_HEADER = "automation-retry-tier"
LEGACY_RETRY_TIER_HEADER = "x-retry-tier"
ATTEMPT_HEADER = "x-automation-attempt"
# The events the notify consumer takes: stage 7's completion has no other consumer (the review gate ends
# the run), and no pipeline consumer binds the run's state changes or a failed publication.
NOTIFY_KEYS = ("run.completed", "run.failed", "run.paused", "run.rejected", "stage.7.completed",
               "content.publish_failed")


@dataclass(frozen=True)
class Topology:
    prefix: str
    retry_delays_seconds: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        """Retry tiers double from `retry_base_seconds`, one per attempt up to `max_attempts`."""
        tiers = max(1, settings.max_attempts - 1)
        return cls(settings.queue_prefix, tuple(settings.retry_base_seconds * 2**k for k in range(tiers)))

    @property
    def exchange(self) -> RabbitExchange:
        return RabbitExchange(f"{self.prefix}.events", type=ExchangeType.TOPIC, durable=True)

    @property
    def dead_letter_exchange(self) -> RabbitExchange:
        return RabbitExchange(f"{self.prefix}.dlx", type=ExchangeType.TOPIC, durable=True)

    @property
    def dead_letter_queue(self) -> RabbitQueue:
        return RabbitQueue(f"{self.prefix}.dead", durable=True, routing_key="#")

    @property
    def retry_exchange(self) -> RabbitExchange:
        """Headers exchange that routes a message to its delay tier, keeping its routing key."""
        return RabbitExchange(f"{self.prefix}.retry", type=ExchangeType.HEADERS, durable=True)

    def _queue(self, name: str) -> RabbitQueue:
        return RabbitQueue(
            f"{self.prefix}.{name}",
            durable=True,
            arguments={"x-dead-letter-exchange": self.dead_letter_exchange.name},
        )

    @staticmethod
    def consumed(queue: RabbitQueue) -> RabbitQueue:
        """`queue` as its subscriber names it: passive (`declare=False`, aio-pika's `passive=True`), so
        `declare_topology` is the one place that declares it, with its dead-letter arguments, and binds it.

        Without the arguments on purpose: FastStream's declarer caches queues by name and arguments but
        not by channel, so an equal queue would be handed the object `declare_topology` declared on the
        default channel, and consumed there without the subscriber's own channel and prefetch.
        """
        return RabbitQueue(queue.name, declare=False)

    def keys_of(self, queue: RabbitQueue) -> list[str]:
        """The routing keys `queue` is bound to."""
        return [key for bound, key in self.bindings() if bound.name == queue.name]

    def control_queue(self) -> RabbitQueue:
        return self._queue("control")

    def plan_queue(self, stage: int) -> RabbitQueue:
        return self._queue(f"stage{stage}.plan")

    def batch_queue(self, stage: int) -> RabbitQueue:
        return self._queue(f"stage{stage}.batch")

    def publish_queue(self) -> RabbitQueue:
        return self._queue("publish")

    def notify_queue(self) -> RabbitQueue:
        """The events people are told about; the notify consumer turns each into deliveries."""
        return self._queue("notify")

    def notify_deliver_queue(self) -> RabbitQueue:
        """One message per notification and channel, apart from the events so deliveries never hold them up."""
        return self._queue("notify.deliver")

    def retry_queue(self, tier: int) -> RabbitQueue:
        """Tier k holds a message for retry_delays_seconds[k], then sends it back to the exchange."""
        delay_ms = int(self.retry_delays_seconds[tier] * 1000)
        return RabbitQueue(
            f"{self.prefix}.retry.{delay_ms}ms",
            durable=True,
            arguments={"x-message-ttl": delay_ms, "x-dead-letter-exchange": self.exchange.name},
        )

    def bindings(self) -> list[tuple[RabbitQueue, str]]:
        """Every (queue, routing key) pair of the pipeline."""
        pairs: list[tuple[RabbitQueue, str]] = [
            (self.control_queue(), key) for key in ("run.start", "run.pause", "run.resume")
        ]
        for stage in STAGE_NUMBERS:
            pairs.append((self.plan_queue(stage), f"stage.{stage}.requested"))
            if stage > 1:
                pairs.append((self.plan_queue(stage), f"stage.{stage - 1}.completed"))
        for stage in BATCH_STAGES:
            pairs.append((self.batch_queue(stage), f"stage.{stage}.batch"))
        pairs.append((self.publish_queue(), "content.publish"))
        pairs += [(self.notify_queue(), key) for key in NOTIFY_KEYS]
        pairs.append((self.notify_deliver_queue(), "notify.deliver"))
        return pairs


async def declare_topology(broker: RabbitBroker, topology: Topology) -> None:
    """Declare exchanges, queues and bindings; idempotent, run by every process at start (a consumer
    before its subscribers attach to their queues). The only place queues are declared and bound."""
    exchange = await broker.declare_exchange(topology.exchange)
    dlx = await broker.declare_exchange(topology.dead_letter_exchange)
    dead = await broker.declare_queue(topology.dead_letter_queue)
    await dead.bind(dlx, routing_key="#")
    retry = await broker.declare_exchange(topology.retry_exchange)
    for tier in range(len(topology.retry_delays_seconds)):
        delay_queue = await broker.declare_queue(topology.retry_queue(tier))
        await delay_queue.unbind(retry, arguments={"x-match": "all", LEGACY_RETRY_TIER_HEADER: str(tier)})
        await delay_queue.bind(retry, arguments={"x-match": "all", RETRY_TIER_HEADER: str(tier)})
    declared: dict[str, object] = {}
    for queue, key in topology.bindings():
        if queue.name not in declared:
            declared[queue.name] = await broker.declare_queue(queue)
        await declared[queue.name].bind(exchange, routing_key=key)  # type: ignore[attr-defined]
