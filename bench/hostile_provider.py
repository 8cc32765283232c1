"""Plugin providers for `python -m bench.hostile` (`AUTOMATION_AI_PROVIDER=bench.hostile_provider:<factory>`).

Both answer like the simulated provider; they differ only where a hostile case needs a fault the
consumers cannot tell from a real one. A plugin is chosen per fleet, so the other cases keep the
stock providers.
"""

from __future__ import annotations

import asyncio

from ai.base import ArticleOut, ClusterOut, ExistingCluster, IdeaIn, KeywordIn, TransientAIError
from ai.simulated import SimulatedProvider
from shared.settings import Settings

FAIL_MARKER = "hostile-fail"  # a stage 1 batch holding a keyword with this text never succeeds


class AlwaysFailingClusters(SimulatedProvider):
    """Clustering raises a retryable error for any batch holding a `FAIL_MARKER` keyword, forever."""

    async def cluster_keywords(self, keywords: list[KeywordIn], existing: list[ExistingCluster]) -> list[ClusterOut]:
        if any(FAIL_MARKER in keyword.text for keyword in keywords):
            raise TransientAIError("hostile bench: this batch always fails")
        return await super().cluster_keywords(keywords, existing)


class SlowContent(SimulatedProvider):
    """Only stage 4 (articles) takes `latency_ms`; every other call answers at once, so a run
    reaches stage 4 quickly and stays there long enough to be attacked."""

    def __init__(self, content_latency_ms: int) -> None:
        super().__init__(latency_ms=0)
        self.content_latency_ms = content_latency_ms

    async def generate_content(self, idea: IdeaIn) -> ArticleOut:
        await asyncio.sleep(self.content_latency_ms * self._random.uniform(0.9, 1.1) / 1000)
        return await super().generate_content(idea)


def failing(settings: Settings) -> AlwaysFailingClusters:
    return AlwaysFailingClusters(settings.ai_latency_ms)


def slow_content(settings: Settings) -> SlowContent:
    """`ai_latency_ms` is the latency of one article; everything else is instant."""
    return SlowContent(settings.ai_latency_ms)
