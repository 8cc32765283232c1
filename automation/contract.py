"""The AsyncAPI document of the event contract, built from the consumers' own subscribers."""

from __future__ import annotations

import json
from typing import Any

from faststream.specification import AsyncAPI

from consumers.app import ProcessState, subscribe_control, subscribe_stage
from shared.catalogue import STAGE_NUMBERS
from shared.messaging import make_broker
from shared.settings import Settings
from shared.topology import Topology


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The event contract as AsyncAPI 3: every consumer's queue and the messages it takes."""
    broker = make_broker(settings, description="Automation pipeline event contract")
    topology = Topology.from_settings(settings)
    state = ProcessState()
    subscribe_control(broker, topology, state, 1)
    for stage in STAGE_NUMBERS:
        subscribe_stage(broker, topology, state, stage, 1)
    schema = AsyncAPI(broker, title="Automation pipeline events", version="1.0.0",
                      description=f"Commands and events on the topic exchange {topology.exchange.name}.")
    document: dict[str, Any] = json.loads(schema.to_specification().to_json())
    return document
