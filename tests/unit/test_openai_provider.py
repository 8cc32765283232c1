"""OpenAIProvider against the local stub: every method, the retry policy, refusals, images, the limit."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from ai.base import (
    AIError,
    ArticleIn,
    ClusterIn,
    ExistingCluster,
    IdeaIn,
    InvalidAIOutput,
    KeywordIn,
    OutlineSection,
    TransientAIError,
)
from ai.openai_provider import OpenAIProvider, retry_after
from ai.openai_replies import markdown_blocks
from shared.settings import Settings
from tests.openai_stub import CHAT, IMAGES, Fault, OpenAIStub

Factory = Callable[..., OpenAIProvider]
KEYWORDS = [KeywordIn(1, "trail running shoes"), KeywordIn(2, "trail running tips"), KeywordIn(3, "sourdough bread"),
            KeywordIn(4, "sourdough starter"), KeywordIn(5, "espresso at home")]
OUTLINE = tuple(OutlineSection(h2=f"Section {n}", h3s=("Detail a", "Detail b")) for n in range(1, 7))
IDEA = IdeaIn(id=7, title="A very long title about trail running shoes that needs a shorter meta title",
              content_type="guide", target_keywords=("trail running shoes",), outline=OUTLINE,
              description="How to choose trail running shoes.", cluster_name="Trail running")


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


@pytest.fixture(autouse=True)
def clean_stub(stub: OpenAIStub) -> None:
    stub.reset()


@pytest.fixture
async def make_provider(stub: OpenAIStub) -> AsyncIterator[Factory]:
    """Providers on the stub with quick timeouts and backoff (so fault tests stay fast), closed afterwards."""
    made: list[OpenAIProvider] = []

    def factory(**overrides: Any) -> OpenAIProvider:
        options: dict[str, Any] = {"openai_timeout_seconds": 2.0, "openai_max_retries": 3,
                                   "openai_max_concurrency": 4, **overrides}
        provider = OpenAIProvider(Settings(ai_provider="openai", openai_base_url=stub.base_url,
                                           openai_api_key="test", **options))
        provider.backoff_base_seconds = 0.05
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        await provider.aclose()


def article_in(sections: tuple[str, ...]) -> ArticleIn:
    return ArticleIn(id=3, title="Trail shoes", markdown="# Trail shoes\n", sections=sections,
                     target_keywords=("trail running shoes",))


async def test_cluster_keywords_assigns_every_keyword_once(stub: OpenAIStub, make_provider: Factory) -> None:
    existing = [ExistingCluster(id=40, name="Sourdough topics", keywords=("sourdough loaf",))]
    clusters = await make_provider().cluster_keywords(KEYWORDS, existing)
    assert sorted(i for c in clusters for i in c.keyword_ids) == [1, 2, 3, 4, 5]
    by_name = {c.name: c for c in clusters}
    assert by_name["Sourdough topics"].existing_id == 40 and by_name["Trail topics"].keyword_ids == (1, 2)
    sent = stub.requests(CHAT)[0].body
    assert sent["response_format"] == {"type": "json_object"} and sent["model"] == "gpt-4o-mini"


async def test_generate_ideas_avoids_taken_titles(stub: OpenAIStub, make_provider: Factory) -> None:
    cluster = ClusterIn(id=1, name="Trail topics", description="", keywords=("trail running shoes",))
    taken = frozenset({"The complete Trail topics guide, part 1"})
    ideas = await make_provider().generate_ideas(cluster, taken)
    assert 1 <= len(ideas) <= 5 and not {i.title for i in ideas} & taken
    assert len({i.primary_keyword for i in ideas}) == len(ideas) and {i.primary_keyword for i in ideas} <= set(
        cluster.keywords)
    assert all(len(i.outline) == 6 and i.outline[0].h3s for i in ideas)


async def test_generate_content_builds_html_and_trims_meta(stub: OpenAIStub, make_provider: Factory) -> None:
    article = await make_provider().generate_content(IDEA)
    assert len(article.meta_title) <= 60 < len(IDEA.title) and len(article.meta_description) <= 160
    assert article.sections == (*(s.h2 for s in OUTLINE), "Conclusion")
    assert article.html.startswith(f"<h1>{IDEA.title}</h1>") and "<h3>Detail a</h3>" in article.html
    assert "<ul><li>" in article.html and article.slug.startswith("a-very-long-title")
    assert 2000 <= article.word_count <= 3000


async def test_generate_image_prompts_numbers_positions(stub: OpenAIStub, make_provider: Factory) -> None:
    prompts = await make_provider().generate_image_prompts(article_in(tuple(f"S{n}" for n in range(6))))
    assert [(p.kind, p.position) for p in prompts][:2] == [("featured", 0), ("in_article", 1)]
    assert [p.position for p in prompts] == [0, 1, 2, 3, 4] and prompts[1].section == "S0"


@pytest.mark.parametrize(("mode", "fmt"), [("b64", "PNG"), ("url", "PNG"), ("url", "JPEG")])
async def test_generate_image_returns_png(stub: OpenAIStub, make_provider: Factory, mode: str, fmt: str) -> None:
    stub.state.image_mode, stub.state.image_format = mode, fmt  # type: ignore[assignment]
    image = await make_provider().generate_image("a red fox in snow", 96, 64)
    assert image.png.startswith(b"\x89PNG") and (image.width, image.height) == (96, 64)
    assert Image.open(io.BytesIO(image.png)).size == (96, 64)
    assert stub.requests(IMAGES)[0].body["size"] == "96x64"


async def test_rate_limit_waits_for_retry_after(stub: OpenAIStub, make_provider: Factory) -> None:
    stub.inject(CHAT, Fault("rate_limit", retry_after="1"))
    await make_provider().generate_image_prompts(article_in(("A", "B")))
    first, second = stub.requests(CHAT)
    assert 1.0 <= second.at - first.at < 1.5


async def test_server_errors_back_off_then_succeed(stub: OpenAIStub, make_provider: Factory) -> None:
    stub.inject(CHAT, Fault("server_error"), count=2)
    prompts = await make_provider().generate_image_prompts(article_in(("A",)))
    assert len(prompts) == 2 and len(stub.requests(CHAT)) == 3


async def test_server_errors_beyond_retries_are_transient(stub: OpenAIStub, make_provider: Factory) -> None:
    stub.inject(CHAT, Fault("server_error"), count=3)
    with pytest.raises(TransientAIError, match="after 3 attempts: HTTP 500") as caught:
        await make_provider(openai_max_retries=2).generate_image_prompts(article_in(("A",)))
    assert caught.value.retryable and len(stub.requests(CHAT)) == 3


async def test_timeout_is_retried(stub: OpenAIStub, make_provider: Factory) -> None:
    stub.inject(CHAT, Fault("slow", delay=1.0))
    started = time.monotonic()
    await make_provider(openai_timeout_seconds=0.5).generate_image_prompts(article_in(("A",)))
    assert len(stub.requests(CHAT)) == 2 and 0.5 <= time.monotonic() - started < 1.0


async def test_malformed_json_is_retryable_invalid_output(stub: OpenAIStub, make_provider: Factory) -> None:
    stub.inject(CHAT, Fault("malformed"))
    with pytest.raises(InvalidAIOutput) as caught:
        await make_provider().cluster_keywords(KEYWORDS, [])
    assert caught.value.retryable and len(stub.requests(CHAT)) == 1


@pytest.mark.parametrize(("path", "kind"), [(CHAT, "policy"), (CHAT, "chat_refusal"), (IMAGES, "policy")])
async def test_content_policy_refusal_is_final(stub: OpenAIStub, make_provider: Factory, path: str, kind: str) -> None:
    stub.inject(path, Fault(kind))  # type: ignore[arg-type]
    provider = make_provider()
    call = provider.generate_image("a fox", 32, 32) if path == IMAGES else provider.generate_content(IDEA)
    with pytest.raises(AIError, match="content policy") as caught:
        await call
    assert caught.value.retryable is False and len(stub.requests(path)) == 1


async def test_concurrency_limit_holds(stub: OpenAIStub, make_provider: Factory) -> None:
    stub.state.delay = 0.2
    provider = make_provider(openai_max_concurrency=2)
    await asyncio.gather(*(provider.generate_image_prompts(article_in(("A",))) for _ in range(6)))
    assert len(stub.requests(CHAT)) == 6 and stub.state.max_in_flight == 2


def test_retry_after_parses_seconds_dates_and_caps() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "3600"}) == 60.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after({}) is None


def test_markdown_blocks_split_lists_from_paragraphs() -> None:
    blocks = markdown_blocks("# T\n\nIntro\nmore\n- a\n- b\n\n## H\ntext")
    assert blocks == [("h1", "T"), ("p", "Intro more"), ("ul", "a\nb"), ("h2", "H"), ("p", "text")]
