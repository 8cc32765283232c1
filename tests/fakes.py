"""A provider plugin for fault-injection tests (`AUTOMATION_AI_PROVIDER=tests.fakes:faulty`).

It behaves like the simulated provider, except that content generation (stage 4) fails or
stalls as `<media_dir>/faults.json` says: {"fail_first": n} fails the first n calls for each idea
in this process, {"always": true} fails every call, {"final": true} fails every call with an error
the provider marks as not retryable (a content-policy refusal), {"delay_seconds": s} makes each
call take s seconds (a run held at stage 4). Tests change the file while the consumers run.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from ai.base import AIError, ArticleOut, IdeaIn, TransientAIError
from ai.simulated import SimulatedProvider
from shared.settings import Settings


class FaultyProvider(SimulatedProvider):
    name = "faulty"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.ai_latency_ms)
        self.control_file = settings.media_dir / "faults.json"
        self.calls: Counter[int] = Counter()

    async def generate_content(self, idea: IdeaIn) -> ArticleOut:
        faults = json.loads(self.control_file.read_text()) if self.control_file.exists() else {}
        self.calls[idea.id] += 1
        if faults.get("final"):
            raise AIError("refused by the content policy", retryable=False)
        if faults.get("always") or self.calls[idea.id] <= int(faults.get("fail_first", 0)):
            raise TransientAIError(f"provider unavailable (HTTP 503) on call {self.calls[idea.id]}")
        await asyncio.sleep(float(faults.get("delay_seconds", 0)))
        return await super().generate_content(idea)


def faulty(settings: Settings) -> FaultyProvider:
    return FaultyProvider(settings)
