"""Errors are classified once (`shared.messaging.disposition`): poison, fail at once, or retry."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from ai.base import AIError, InvalidAIOutput, TransientAIError
from shared.events import PauseRun, ProcessBatch, StartRun
from shared.messaging import Disposition, PoisonMessage, disposition


def caught(call) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        call()
    except BaseException as error:
        return error
    raise AssertionError("no error")


@pytest.mark.parametrize("error", [
    PoisonMessage("unknown run"),
    caught(lambda: json.loads("{nope")),
    caught(lambda: json.loads("[" * 100_000 + "]" * 100_000)),
    caught(lambda: StartRun.model_validate({"type": "run.start", "site_id": 10**12})),
    caught(lambda: ProcessBatch.model_validate({"type": "stage.1.batch", "run_id": "r", "batch_id": 2**63})),
    caught(lambda: PauseRun.model_validate({"type": "run.pause", "run_id": "run\x00x"})),
    caught(lambda: StartRun.model_validate({"type": "run.start", "site_id": 1, "requested_by": "a\x00b"})),
])
def test_malformed_and_out_of_range_messages_are_poison(error: BaseException) -> None:
    assert isinstance(error, PoisonMessage | ValueError | RecursionError | ValidationError)
    assert disposition(error) is Disposition.POISON


def test_errors_that_repeat_on_every_try_fail_at_once() -> None:
    assert disposition(AIError("refused by the content policy", retryable=False)) is Disposition.FAIL
    assert disposition(InvalidAIOutput("cannot render", retryable=False)) is Disposition.FAIL
    assert disposition(DataError("INSERT", {}, Exception("value too long"))) is Disposition.FAIL
    wrapped = RuntimeError("while writing")
    wrapped.__cause__ = AIError("policy", retryable=False)
    assert disposition(wrapped) is Disposition.FAIL


def test_infrastructure_and_transient_errors_are_retried() -> None:
    assert disposition(OperationalError("SELECT 1", {}, ConnectionRefusedError())) is Disposition.RETRY
    assert disposition(DBAPIError("SELECT 1", {}, Exception("too many clients"))) is Disposition.RETRY
    assert disposition(TransientAIError("HTTP 503")) is Disposition.RETRY
    assert disposition(InvalidAIOutput("missing keyword")) is Disposition.RETRY
    assert disposition(TimeoutError()) is Disposition.RETRY
