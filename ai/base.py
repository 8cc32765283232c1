"""The provider interface every AI backend implements, and the value types it speaks.

The pipeline talks only to `AIProvider`; which backend sits behind it (the offline
`local` provider or an OpenAI-compatible one) is a setting. Inputs and outputs are
plain frozen dataclasses so stage code and tests never depend on a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class AIError(Exception):
    """An AI call failed; `retryable` tells the consumer whether a retry can help."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class TransientAIError(AIError):
    """Timeouts, rate limits, 5xx: worth retrying with backoff."""

    retryable = True


class InvalidAIOutput(AIError):
    """The provider answered, but the output is empty or malformed."""

    retryable = True


@dataclass(frozen=True)
class KeywordIn:
    id: int
    text: str
    volume: int = 0


@dataclass(frozen=True)
class ExistingCluster:
    id: int
    name: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class ClusterOut:
    """One cluster: either a new one (`existing_id` None, `name` set) or keywords
    joining an existing cluster of the site (`existing_id` set)."""

    name: str
    description: str
    keyword_ids: tuple[int, ...]
    existing_id: int | None = None


@dataclass(frozen=True)
class ClusterIn:
    id: int
    name: str
    description: str
    keywords: tuple[str, ...]
    # The run's year, for titles that name one ("... in 2026"). None (the default): no title names a year the
    # keywords do not, so the same keywords give the same ideas whatever the date.
    year: int | None = None


@dataclass(frozen=True)
class OutlineSection:
    h2: str
    h3s: tuple[str, ...]


@dataclass(frozen=True)
class IdeaOut:
    title: str
    content_type: str  # e.g. "guide", "listicle", "how-to", "comparison", "review"
    target_keywords: tuple[str, ...]
    outline: tuple[OutlineSection, ...]
    description: str
    primary_keyword: str  # the one keyword of the cluster (its search intent) the article targets


@dataclass(frozen=True)
class IdeaIn:
    id: int
    title: str
    content_type: str
    target_keywords: tuple[str, ...]
    outline: tuple[OutlineSection, ...]
    description: str
    cluster_name: str


@dataclass(frozen=True)
class ArticleOut:
    title: str
    meta_title: str  # <= 60 characters
    meta_description: str  # <= 160 characters
    slug: str
    html: str
    markdown: str
    word_count: int
    sections: tuple[str, ...] = field(default=())  # the H2 headings, in order


@dataclass(frozen=True)
class ArticleIn:
    id: int
    title: str
    markdown: str
    sections: tuple[str, ...]
    target_keywords: tuple[str, ...]


@dataclass(frozen=True)
class ImagePromptOut:
    kind: str  # "featured" or "in_article"
    position: int  # 0 for the featured image, 1.. for in-article images
    prompt: str
    section: str | None = None


@dataclass(frozen=True)
class ImageOut:
    png: bytes
    width: int
    height: int


class AIProvider(Protocol):
    """What a backend must do. Every method is async so network backends fit."""

    name: str

    async def cluster_keywords(
        self, keywords: list[KeywordIn], existing: list[ExistingCluster]
    ) -> list[ClusterOut]:
        """Group `keywords`; each keyword id appears in exactly one returned cluster."""
        ...

    async def generate_ideas(self, cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
        """3-5 ideas for the cluster, none whose title is in `taken_titles`."""
        ...

    async def generate_content(self, idea: IdeaIn) -> ArticleOut:
        """A full article following the idea's outline."""
        ...

    async def generate_image_prompts(self, article: ArticleIn) -> list[ImagePromptOut]:
        """One featured prompt (position 0) and in-article prompts from the article's sections."""
        ...

    async def generate_image(self, prompt: str, width: int, height: int) -> ImageOut:
        """Render one image for `prompt` as PNG bytes."""
        ...
