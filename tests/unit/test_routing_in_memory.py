"""Routing of the control queue with FastStream's in-memory broker (fast; the e2e tests use RabbitMQ)."""

from faststream.rabbit import TestRabbitBroker

from shared.events import ControlCommand, PauseRun, StartRun
from shared.messaging import make_broker
from shared.settings import Settings
from shared.topology import Topology


async def test_control_commands_reach_the_handler_typed():
    settings = Settings()
    topology = Topology("unit")
    broker = make_broker(settings)
    received = []

    @broker.subscriber(topology.control_queue())
    async def on_control(command: ControlCommand) -> None:
        received.append(command)

    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(StartRun(site_id=5).model_dump(mode="json"), queue=topology.control_queue())
        await test_broker.publish(PauseRun(run_id="run_x").model_dump(mode="json"), queue=topology.control_queue())
    assert [type(c) for c in received] == [StartRun, PauseRun]
    assert received[0].site_id == 5


def test_every_stage_plan_queue_is_bound_to_the_previous_completion():
    pairs = {(q.name, key) for q, key in Topology("p").bindings()}
    for stage in range(2, 8):
        assert (f"p.stage{stage}.plan", f"stage.{stage - 1}.completed") in pairs
    assert ("p.stage1.plan", "stage.1.requested") in pairs
    assert ("p.stage7.batch", "stage.7.batch") not in pairs
