"""The AsyncAPI document of the event contract, built from the consumers' own subscribers and the
declared publishers of every message the system emits."""

from __future__ import annotations

import json
from typing import Any

from faststream.specification import AsyncAPI

from consumers.app import PROCESSES, subscribe
from consumers.deps import Deps
from shared.messaging import make_broker
from shared.publishers import declare_publishers
from shared.settings import Settings
from shared.topology import Topology


def _never_called() -> Deps:
    raise RuntimeError("the contract's subscribers only describe their messages; they never handle one")


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The event contract as AsyncAPI 3: every consumer's queue and the messages it takes, and every
    routing key published on the topic exchange with its message's schema."""
    broker = make_broker(settings, description="Automation pipeline event contract")
    topology = Topology.from_settings(settings)
    for process in PROCESSES:
        subscribe(broker, topology, process, 1, _never_called)
    declare_publishers(broker, topology)
    schema = AsyncAPI(broker, title="Automation pipeline events", version="1.0.0",
                      description=f"Commands and events on the topic exchange {topology.exchange.name}.")
    document: dict[str, Any] = json.loads(schema.to_specification().to_json())
    return document
