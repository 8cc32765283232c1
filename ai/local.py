"""The offline `local` provider: real clustering, template-grammar writing, Pillow images.

No network and no model downloads, and the same input always gives the same output, so
the whole pipeline can run (and be tested) on a laptop. The work lives in helpers named after
what they write: `local_cluster` (sentence embeddings + TF-IDF, agglomerative), `local_ideas` (titles and
outlines), `local_articles` (the articles, rendered by `article_render`) and `local_images`
(image prompts and PNG rendering). Their templates and word lists are data, in `ai/data/`
(read by `local_templates`); `local_text` holds the phrase helpers they share.
"""

from __future__ import annotations

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
    InvalidAIOutput,
    KeywordIn,
)
from ai.local_articles import generate_content
from ai.local_cluster import DEFAULT_DISTANCE_THRESHOLD, cluster
from ai.local_ideas import generate_ideas
from ai.local_images import image_prompts, render_png


class LocalProvider:
    """Implements `AIProvider` without any external service."""

    name = "local"

    def __init__(self, cluster_distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD) -> None:
        self.cluster_distance_threshold = cluster_distance_threshold

    async def cluster_keywords(self, keywords: list[KeywordIn], existing: list[ExistingCluster]) -> list[ClusterOut]:
        """Cluster the batch; each keyword lands in exactly one returned cluster."""
        return cluster(keywords, existing, self.cluster_distance_threshold)

    async def generate_ideas(self, cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
        """3-5 ideas whose titles are not taken."""
        return generate_ideas(cluster, taken_titles)

    async def generate_content(self, idea: IdeaIn) -> ArticleOut:
        """A full article following the idea's outline."""
        article = generate_content(idea)
        if not article.markdown.strip() or not article.html.strip():
            raise InvalidAIOutput(f"empty article for idea {idea.id}")
        return article

    async def generate_image_prompts(self, article: ArticleIn) -> list[ImagePromptOut]:
        """One featured prompt plus 3-5 prompts for the article's sections."""
        prompts = image_prompts(article)
        if not prompts:
            raise InvalidAIOutput(f"no image prompts for article {article.id}")
        return prompts

    async def generate_image(self, prompt: str, width: int, height: int) -> ImageOut:
        """A deterministic PNG illustration for the prompt."""
        if not prompt.strip():
            raise InvalidAIOutput("empty image prompt", retryable=False)
        return ImageOut(png=render_png(prompt, width, height), width=width, height=height)
