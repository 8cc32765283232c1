"""The offline provider's own speed: articles and images per second on one core."""

from __future__ import annotations

import time

from ai.base import ClusterIn, IdeaIn
from ai.local import LocalProvider
from shared.demo_data import DEMO_TOPICS


async def provider_speed(width: int, height: int, articles: int = 40, images: int = 40) -> dict[str, float]:
    provider = LocalProvider()
    ideas: list[IdeaIn] = []
    for index, (topic, keywords) in enumerate(DEMO_TOPICS.items()):
        cluster = ClusterIn(id=index, name=topic, description=topic, keywords=tuple(keywords[:8]))
        for idea in await provider.generate_ideas(cluster, frozenset()):
            ideas.append(IdeaIn(id=len(ideas), title=idea.title, content_type=idea.content_type,
                                target_keywords=idea.target_keywords, outline=idea.outline,
                                description=idea.description, cluster_name=topic))
    ideas = (ideas * (articles // max(1, len(ideas)) + 1))[:articles]
    started = time.perf_counter()
    for article_idea in ideas:
        await provider.generate_content(article_idea)
    article_rate = len(ideas) / (time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(images):
        await provider.generate_image(f"illustration {n} of {ideas[n % len(ideas)].title}", width, height)
    image_rate = images / (time.perf_counter() - started)
    return {"articles_per_second": article_rate, "images_per_second": image_rate}

