"""The AI functions the stages call: AutoCluster, GenerateIdeas, GenerateContent,
GenerateImagePrompts, GenerateImages.

Each takes one batch, calls the provider, and checks the output before the stage may write
it: an empty or inconsistent answer is an `InvalidAIOutput` (retryable), never a success.
Every provider call is timed (`automation_ai_call_duration_seconds`).
`credits()` is the seed's rate for what the function produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ai.base import (
    AIProvider,
    ArticleIn,
    ArticleOut,
    ClusterIn,
    ClusterOut,
    ExistingCluster,
    IdeaIn,
    IdeaOut,
    ImageOut,
    ImagePromptOut,
    InvalidAIOutput,
    KeywordIn,
)
from shared.catalogue import stage_cost
from shared.metrics import timed_ai_call


class AutoCluster:
    stage = 1

    def __init__(self, provider: AIProvider) -> None:
        self.provider = provider

    async def execute(self, keywords: Sequence[KeywordIn], existing: Sequence[ExistingCluster]) -> list[ClusterOut]:
        clusters = await timed_ai_call("AutoCluster", self.provider,
                                       self.provider.cluster_keywords(list(keywords), list(existing)))
        given = sorted(k.id for k in keywords)
        assigned = sorted(i for c in clusters for i in c.keyword_ids)
        if assigned != given:
            raise InvalidAIOutput("AutoCluster did not assign every keyword exactly once")
        known = {c.id for c in existing}
        for cluster in clusters:
            if not cluster.name.strip() or (cluster.existing_id is not None and cluster.existing_id not in known):
                raise InvalidAIOutput(f"AutoCluster returned an invalid cluster {cluster.name!r}")
        return clusters

    @staticmethod
    def credits(keywords: int) -> int:
        return stage_cost(1, keywords)


class GenerateIdeas:
    stage = 2

    def __init__(self, provider: AIProvider) -> None:
        self.provider = provider

    async def execute(self, clusters: Sequence[ClusterIn], taken_titles: frozenset[str]) -> dict[int, list[IdeaOut]]:
        results: dict[int, list[IdeaOut]] = {}
        taken = {t.casefold() for t in taken_titles}
        for cluster in clusters:
            ideas = await timed_ai_call("GenerateIdeas", self.provider,
                                        self.provider.generate_ideas(cluster, frozenset(taken)))
            if not ideas:
                raise InvalidAIOutput(f"GenerateIdeas returned no idea for cluster {cluster.id}")
            for idea in ideas:
                key = idea.title.strip().casefold()
                if not key or key in taken or len(idea.outline) == 0:
                    raise InvalidAIOutput(f"GenerateIdeas returned a duplicate or empty idea {idea.title!r}")
                taken.add(key)
            results[cluster.id] = ideas
        return results

    @staticmethod
    def credits(clusters: int) -> int:
        return stage_cost(2, clusters)


class GenerateContent:
    stage = 4

    def __init__(self, provider: AIProvider) -> None:
        self.provider = provider

    async def execute(self, ideas: Sequence[IdeaIn]) -> dict[int, ArticleOut]:
        articles = await asyncio.gather(*(timed_ai_call("GenerateContent", self.provider,
                                                        self.provider.generate_content(idea)) for idea in ideas))
        for idea, article in zip(ideas, articles, strict=True):
            if not article.title.strip() or article.word_count <= 0 or not article.html.strip():
                raise InvalidAIOutput(f"GenerateContent returned an empty article for idea {idea.id}")
            if len(article.meta_title) > 60 or len(article.meta_description) > 160:
                raise InvalidAIOutput(f"GenerateContent meta fields too long for idea {idea.id}")
        return {idea.id: article for idea, article in zip(ideas, articles, strict=True)}

    @staticmethod
    def credits(contents: int) -> int:
        return stage_cost(4, contents)


class GenerateImagePrompts:
    stage = 5

    def __init__(self, provider: AIProvider) -> None:
        self.provider = provider

    async def execute(self, articles: Sequence[ArticleIn]) -> dict[int, list[ImagePromptOut]]:
        results = await asyncio.gather(*(timed_ai_call("GenerateImagePrompts", self.provider,
                                                       self.provider.generate_image_prompts(a)) for a in articles))
        for article, prompts in zip(articles, results, strict=True):
            positions = [p.position for p in prompts]
            if not prompts or len(set(positions)) != len(positions) or any(not p.prompt.strip() for p in prompts):
                raise InvalidAIOutput(f"GenerateImagePrompts returned invalid prompts for content {article.id}")
        return {a.id: list(p) for a, p in zip(articles, results, strict=True)}

    @staticmethod
    def credits(contents: int) -> int:
        return stage_cost(5, contents)


class GenerateImages:
    stage = 6

    def __init__(self, provider: AIProvider) -> None:
        self.provider = provider

    async def execute(self, prompts: dict[int, str], width: int, height: int) -> dict[int, ImageOut]:
        ids = list(prompts)
        images = await asyncio.gather(*(timed_ai_call("GenerateImages", self.provider,
                                                      self.provider.generate_image(prompts[i], width, height))
                                        for i in ids))
        for image_id, image in zip(ids, images, strict=True):
            if not image.png.startswith(b"\x89PNG"):
                raise InvalidAIOutput(f"GenerateImages returned no PNG for image {image_id}")
        return dict(zip(ids, images, strict=True))

    @staticmethod
    def credits(images: int) -> int:
        return stage_cost(6, images)
