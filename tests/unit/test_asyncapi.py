"""The AsyncAPI document the API serves at /asyncapi.json: every message of the contract with its schema,
as the consumers take it and as it is published on the topic exchange."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from automation.contract import asyncapi_document
from producers.api.app import create_app
from shared import events
from shared.publishers import routing_keys
from shared.settings import Settings
from shared.topology import Topology

MODELS = sorted((m for m in vars(events).values()
                 if isinstance(m, type) and issubclass(m, events.Message) and m is not events.Message),
                key=lambda m: m.__name__)
TAKEN_BY_CONSUMERS = {"StartRun", "PauseRun", "ResumeRun", "RequestStage", "StageCompleted", "ProcessBatch",
                      "PublishContent", "RunStateChanged", "PublicationChanged", "RunRejected", "DeliverNotification"}
SETTINGS = Settings(queue_prefix="contract")


@pytest.fixture(scope="module")
async def document() -> dict[str, Any]:
    app = create_app(SETTINGS, asyncapi_document(SETTINGS))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        response = await http.get("/asyncapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def payloads(document: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    """The schemas an operation's messages carry (each member of a discriminated union)."""
    names: set[str] = set()
    for message_ref in operation["messages"]:
        message = resolve(document, resolve(document, message_ref["$ref"])["$ref"])
        payload = resolve(document, message["payload"]["$ref"])
        refs = [member["$ref"] for member in payload.get("oneOf", [])] or [message["payload"]["$ref"]]
        names |= {ref.rsplit("/", 1)[1] for ref in refs}
    return names


def operations(document: dict[str, Any], action: str) -> dict[str, dict[str, Any]]:
    """Operations by their channel's address (a routing key sent to, or a queue received from)."""
    return {resolve(document, op["channel"]["$ref"])["address"]: op
            for op in document["operations"].values() if op["action"] == action}


def test_every_message_type_has_its_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model in MODELS:
        expected = model.model_json_schema()
        assert set(schemas[model.__name__]["properties"]) == set(expected["properties"]), model
        assert set(schemas[model.__name__].get("required", [])) == set(expected.get("required", [])), model


def test_every_routing_key_is_published_on_the_topic_exchange_with_its_message(document: dict[str, Any]) -> None:
    sent = operations(document, "send")
    expected = {key: model.__name__ for model in MODELS for key in routing_keys(model)}
    assert set(sent) == set(expected)
    exchange = Topology.from_settings(SETTINGS).exchange.name
    for key, model_name in expected.items():
        assert payloads(document, sent[key]) == {model_name}, key
        channel = resolve(document, sent[key]["channel"]["$ref"])
        assert channel["bindings"]["amqp"]["exchange"]["name"] == exchange
        assert channel["description"], key
        assert sent[key]["bindings"]["amqp"]["deliveryMode"] == 2  # persistent


def test_every_consumer_queue_is_subscribed_with_the_messages_it_takes(document: dict[str, Any]) -> None:
    received = operations(document, "receive")
    topology = Topology.from_settings(SETTINGS)
    assert set(received) == {queue.name for queue, _ in topology.bindings()}
    assert set().union(*(payloads(document, op) for op in received.values())) == TAKEN_BY_CONSUMERS
    assert payloads(document, received[topology.control_queue().name]) == {"StartRun", "PauseRun", "ResumeRun"}
    assert payloads(document, received[topology.plan_queue(4).name]) == {"RequestStage", "StageCompleted"}
    assert payloads(document, received[topology.batch_queue(4).name]) == {"ProcessBatch"}
    assert payloads(document, received[topology.publish_queue().name]) == {"PublishContent"}
    assert payloads(document, received[topology.notify_queue().name]) == {
        "RunStateChanged", "StageCompleted", "PublicationChanged", "RunRejected"}
    assert payloads(document, received[topology.notify_deliver_queue().name]) == {"DeliverNotification"}
