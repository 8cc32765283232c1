"""A provider with a configurable latency and trivial output, for benchmarks.

It measures the pipeline, not the AI: every call sleeps about `latency_ms` (uniformly within
±`jitter`, 20% by default, so the mean is `latency_ms`) and answers with small but valid,
input-specific output. Every method is exactly one simulated call, which is what lets the bench
compute the ideal wall time of a run from its call counts. `AUTOMATION_AI_LATENCY_MS` sets the
latency of the consumers' provider; `automation bench --latency-ms` sets it for a measurement.
"""

from __future__ import annotations

import asyncio
import io
import random
import zlib

from PIL import Image as PILImage

from ai.base import (
    ArticleIn,
    ArticleOut,
    ClusterIn,
    ClusterOut,
    ExistingCluster,
    IdeaIn,
    IdeaOut,
    ImageOut,
    ImagePromptOut,
    KeywordIn,
    OutlineSection,
)


def _tiny_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (16, 16), (seed % 256, (seed >> 8) % 256, (seed >> 16) % 256)).save(buffer, "PNG")
    return buffer.getvalue()


class SimulatedProvider:
    name = "simulated"
    # a benchmark's fixed workload, not content: stage 2's near-duplicate check leaves its ideas alone
    fixed_workload = True

    def __init__(self, latency_ms: int = 0, jitter: float = 0.2, seed: int | None = None) -> None:
        if latency_ms < 0 or not 0 <= jitter < 1:
            raise ValueError("latency_ms must be >= 0 and jitter in [0, 1)")
        self.latency_ms = latency_ms
        self.jitter = jitter
        self._random = random.Random(seed)

    def delay_seconds(self) -> float:
        """One call's latency: `latency_ms` ± `jitter` (uniform, so the mean is `latency_ms`)."""
        return self.latency_ms * self._random.uniform(1 - self.jitter, 1 + self.jitter) / 1000

    async def _wait(self) -> None:
        # sleep(0) at zero latency still yields, as a real network call would
        await asyncio.sleep(self.delay_seconds() if self.latency_ms > 0 else 0)

    async def cluster_keywords(self, keywords: list[KeywordIn], existing: list[ExistingCluster]) -> list[ClusterOut]:
        await self._wait()
        groups: dict[str, list[int]] = {}
        for keyword in keywords:
            head = " ".join(keyword.text.split()[:2]).title()
            groups.setdefault(head, []).append(keyword.id)
        by_name = {c.name: c.id for c in existing}
        return [ClusterOut(name=name, description=f"Keywords about {name}", keyword_ids=tuple(ids),
                           existing_id=by_name.get(name)) for name, ids in groups.items()]

    async def generate_ideas(self, cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
        await self._wait()
        outline = tuple(OutlineSection(h2=f"{cluster.name} part {i}", h3s=("Basics", "Details"))
                        for i in range(1, 7))
        ideas = []
        targets = cluster.keywords or (cluster.name,)
        for number, kind in enumerate(("guide", "how-to", "listicle")):  # a fixed workload shape for the benches
            title = f"{cluster.name}: the {kind} (#{cluster.id})"
            if title.casefold() not in taken_titles:
                ideas.append(IdeaOut(title=title, content_type=kind, target_keywords=cluster.keywords[:3],
                                     outline=outline, description=f"A {kind} on {cluster.name}.",
                                     primary_keyword=targets[number % len(targets)]))
        return ideas

    async def generate_content(self, idea: IdeaIn) -> ArticleOut:
        await self._wait()
        body = "\n\n".join(f"## {s.h2}\n\n{idea.title} covers {s.h2.lower()}." for s in idea.outline)
        markdown = f"# {idea.title}\n\n{body}\n"
        return ArticleOut(title=idea.title, meta_title=idea.title[:60], meta_description=idea.description[:160],
                          slug=f"idea-{idea.id}", html=f"<h1>{idea.title}</h1>", markdown=markdown,
                          word_count=len(markdown.split()), sections=tuple(s.h2 for s in idea.outline))

    async def generate_image_prompts(self, article: ArticleIn) -> list[ImagePromptOut]:
        await self._wait()
        prompts = [ImagePromptOut(kind="featured", position=0, prompt=f"Featured image for {article.title}")]
        prompts += [ImagePromptOut(kind="in_article", position=i, prompt=f"Illustration of {section}",
                                   section=section) for i, section in enumerate(article.sections[:4], start=1)]
        return prompts

    async def generate_image(self, prompt: str, width: int, height: int) -> ImageOut:
        await self._wait()
        return ImageOut(png=_tiny_png(zlib.crc32(prompt.encode())), width=16, height=16)
