"""The `openai` provider: any OpenAI-compatible API behind the `AIProvider` interface.

Chat calls ask for one JSON object whose shape the system prompt spells out; the reply is
validated with pydantic and checked (every keyword once, enough ideas, ...) so a sloppy
answer becomes a retryable `InvalidAIOutput` instead of bad rows. Articles come back as
markdown: HTML, sections and the word count are derived here, never trusted from the model.

Transport failures are retried here, a few times and briefly (429 honours Retry-After,
5xx/timeouts back off exponentially with jitter); after that the pipeline's message-level
retry takes over. Refusals and other 4xx are final. One semaphore per process and event
loop bounds the calls in flight, so a large run cannot turn into a retry storm.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import html
import io
import json
import random
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
import openai
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, ValidationError

from ai.article_render import clip, count_words, slugify
from ai.base import (
    AIError,
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
    OutlineSection,
    TransientAIError,
)
from shared.settings import Settings

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_RETRY_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
REFUSAL_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- reply schemas -------------------------------------------------------------------------------------------


class _ClusterItem(BaseModel):
    name: str = Field(min_length=1)
    description: str = ""
    keyword_ids: list[int] = Field(min_length=1)
    existing_id: int | None = None


class _ClusterReply(BaseModel):
    clusters: list[_ClusterItem] = Field(min_length=1)


class _SectionItem(BaseModel):
    h2: str = Field(min_length=1)
    h3s: list[str] = []


class _IdeaItem(BaseModel):
    title: str = Field(min_length=1)
    content_type: str = Field(min_length=1)
    target_keywords: list[str] = []
    outline: list[_SectionItem] = Field(min_length=1)
    description: str = ""


class _IdeasReply(BaseModel):
    ideas: list[_IdeaItem] = Field(min_length=1)


class _ArticleReply(BaseModel):
    title: str = Field(min_length=1)
    meta_title: str = Field(min_length=1)
    meta_description: str = Field(min_length=1)
    slug: str = ""
    markdown: str = Field(min_length=1)


class _SectionPrompt(BaseModel):
    section: str = Field(min_length=1)
    prompt: str = Field(min_length=1)


class _PromptsReply(BaseModel):
    featured: str = Field(min_length=1)
    in_article: list[_SectionPrompt] = Field(min_length=1)


# --- system prompts ------------------------------------------------------------------------------------------

_JSON_ONLY = "Answer with one JSON object only, exactly in this shape, no prose and no code fences:\n"

CLUSTER_PROMPT = (
    "You group SEO keywords into topical clusters. The user sends JSON with `keywords` (id, text) and "
    "`existing_clusters` (id, name, sample keywords). Put every keyword id in exactly one cluster. When keywords "
    "belong to an existing cluster, answer that cluster with its `existing_id`; otherwise set `existing_id` to null "
    "and give a short new name (2-5 words).\n" + _JSON_ONLY
    + '{"clusters": [{"name": "string", "description": "one sentence", "keyword_ids": [1, 2], '
    '"existing_id": null}]}'
)
IDEAS_PROMPT = (
    "You plan blog articles for one keyword cluster. The user sends JSON with the cluster (name, description, "
    "keywords) and `taken_titles`. Propose 3 to 5 distinct article ideas, none with a title in `taken_titles`. "
    "`content_type` is one of guide, how-to, listicle, comparison, review, checklist. Each outline has 5-8 H2 "
    "sections with 0-4 H3s each.\n" + _JSON_ONLY
    + '{"ideas": [{"title": "string", "content_type": "guide", "target_keywords": ["string"], '
    '"outline": [{"h2": "string", "h3s": ["string"]}], "description": "one or two sentences"}]}'
)
CONTENT_PROMPT = (
    "You write complete, helpful blog articles of about 2,000-2,500 words in markdown. The user sends JSON with "
    "the idea (title, content_type, target_keywords, outline, description, cluster_name). Follow the outline: "
    "one '# ' title line, an introduction, every H2 as '## ' and every H3 as '### ', paragraphs separated by blank "
    "lines, lists as '- ' lines. meta_title at most 60 characters, meta_description at most 160 characters, slug "
    "lowercase words joined by hyphens.\n" + _JSON_ONLY
    + '{"title": "string", "meta_title": "string", "meta_description": "string", "slug": "string", '
    '"markdown": "string"}'
)
PROMPTS_PROMPT = (
    "You write prompts for an image model to illustrate a blog article. The user sends JSON with the article's "
    "title, target keywords, H2 sections and markdown. Give one featured image prompt for the whole article and "
    "3 to 5 in-article prompts, each for one of the given sections (use the section text exactly). Each prompt is "
    "one descriptive sentence: subject, style, mood, colours; no text in the image.\n" + _JSON_ONLY
    + '{"featured": "string", "in_article": [{"section": "string", "prompt": "string"}]}'
)


# --- the provider ---------------------------------------------------------------------------------------------


@dataclass
class _LoopState:
    """An API client and the concurrency limit, both bound to one event loop."""

    client: openai.AsyncOpenAI
    limit: asyncio.Semaphore


class OpenAIProvider:
    """Implements `AIProvider` over the official `openai` SDK (SDK retries off: retries are ours)."""

    name = "openai"
    backoff_base_seconds = 0.5  # first backoff after a 5xx or timeout; doubles per retry

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    async def cluster_keywords(self, keywords: list[KeywordIn], existing: list[ExistingCluster]) -> list[ClusterOut]:
        """Clusters in which every given keyword id appears exactly once."""
        payload = {"task": "cluster_keywords",
                   "keywords": [{"id": k.id, "text": k.text} for k in keywords],
                   "existing_clusters": [{"id": c.id, "name": c.name, "keywords": list(c.keywords[:10])}
                                         for c in existing]}
        reply = await self._chat_json("cluster_keywords", CLUSTER_PROMPT, payload, _ClusterReply)
        return checked_clusters(reply, {k.id for k in keywords}, {c.id for c in existing})

    async def generate_ideas(self, cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
        """3-5 ideas with untaken, distinct titles."""
        payload = {"task": "generate_ideas",
                   "cluster": {"name": cluster.name, "description": cluster.description,
                               "keywords": list(cluster.keywords)},
                   "taken_titles": sorted(taken_titles)}
        reply = await self._chat_json("generate_ideas", IDEAS_PROMPT, payload, _IdeasReply)
        return checked_ideas(reply, taken_titles)

    async def generate_content(self, idea: IdeaIn) -> ArticleOut:
        """The model writes markdown; HTML, sections and word count are derived from it here."""
        payload = {"task": "generate_content",
                   "idea": {"title": idea.title, "content_type": idea.content_type,
                            "target_keywords": list(idea.target_keywords),
                            "outline": [{"h2": s.h2, "h3s": list(s.h3s)} for s in idea.outline],
                            "description": idea.description, "cluster_name": idea.cluster_name}}
        reply = await self._chat_json("generate_content", CONTENT_PROMPT, payload, _ArticleReply)
        return build_article(reply)

    async def generate_image_prompts(self, article: ArticleIn) -> list[ImagePromptOut]:
        """Featured prompt at position 0, then in-article prompts numbered from 1."""
        payload = {"task": "generate_image_prompts", "title": article.title,
                   "target_keywords": list(article.target_keywords), "sections": list(article.sections),
                   "markdown": article.markdown[:6000]}
        reply = await self._chat_json("generate_image_prompts", PROMPTS_PROMPT, payload, _PromptsReply)
        return build_prompts(reply)

    async def generate_image(self, prompt: str, width: int, height: int) -> ImageOut:
        """PNG bytes from b64_json or a downloaded URL, with the image's real size."""
        if not prompt.strip():
            raise AIError("empty image prompt", retryable=False)
        size = f"{width}x{height}"
        response = await self._call("generate_image", lambda client: client.images.generate(
            model=self.settings.openai_image_model, prompt=prompt, size=size, n=1))
        first = response.data[0] if response.data else None
        if first is not None and first.b64_json:
            raw = _b64(first.b64_json)
        elif first is not None and first.url:
            raw = await self._call("download_image", lambda _client: self._download(first.url or ""))
        else:
            raise InvalidAIOutput("generate_image: the response holds no image")
        return as_png(raw)

    async def aclose(self) -> None:
        """Close the running loop's HTTP connections (on shutdown, and in tests)."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.close()

    # --- transport ---------------------------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        """The client and semaphore of the running loop (created on first use in that loop)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            client = openai.AsyncOpenAI(base_url=self.settings.openai_base_url,
                                        api_key=self.settings.openai_api_key or "unused",
                                        timeout=self.settings.openai_timeout_seconds, max_retries=0)
            state = self._loops[loop] = _LoopState(client, asyncio.Semaphore(self.settings.openai_max_concurrency))
        return state

    async def _call(self, what: str, request: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
        """Run `request` under the concurrency limit, retrying transient failures (sleeping outside the limit)."""
        state = self._state()
        retries = self.settings.openai_max_retries
        for attempt in range(retries + 1):
            try:
                async with state.limit:
                    return await request(state.client)
            except (openai.APIStatusError, openai.APIConnectionError, TransientAIError) as exc:
                delay = self._retry_delay(what, exc, attempt)
                if attempt == retries:
                    raise TransientAIError(f"{what} failed after {retries + 1} attempts: {describe(exc)}") from exc
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _retry_delay(self, what: str, exc: Exception, attempt: int) -> float:
        """Seconds to wait before retrying `exc`; raises `AIError` when a retry cannot help."""
        if isinstance(exc, openai.APIStatusError):
            if exc.code in REFUSAL_CODES:
                raise AIError(f"{what} refused by the content policy: {exc.message}", retryable=False) from exc
            if exc.status_code == 429:
                wait = retry_after(exc.response.headers)
                return self._backoff(attempt) if wait is None else wait
            if exc.status_code < 500:
                raise AIError(f"{what} rejected with HTTP {exc.status_code}: {exc.message}", retryable=False) from exc
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff, capped, jittered over its upper half so retries of a batch spread out."""
        ceiling = min(MAX_BACKOFF_SECONDS, self.backoff_base_seconds * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)

    async def _download(self, url: str) -> bytes:
        """An image URL's bytes; network errors and 5xx are transient, other statuses final."""
        try:
            async with httpx.AsyncClient(timeout=self.settings.openai_timeout_seconds) as http:
                response = await http.get(url)
        except httpx.HTTPError as exc:
            raise TransientAIError(f"image download failed: {exc!r}") from exc
        if response.status_code >= 500:
            raise TransientAIError(f"image download failed with HTTP {response.status_code}")
        if response.status_code >= 400:
            raise AIError(f"image download failed with HTTP {response.status_code}", retryable=False)
        return response.content

    async def _chat_json(self, what: str, system: str, payload: dict[str, Any], schema: type[M]) -> M:
        """One JSON-mode chat completion parsed into `schema`; refusals are final, bad JSON is retryable."""
        completion = await self._call(what, lambda client: client.chat.completions.create(
            model=self.settings.openai_chat_model, response_format={"type": "json_object"},
            messages=[{"role": "system", "content": system},
                      {"role": "user", "content": json.dumps(payload, ensure_ascii=False)}]))
        if not completion.choices:
            raise InvalidAIOutput(f"{what}: the response has no choices")
        choice = completion.choices[0]
        if choice.message.refusal or choice.finish_reason == "content_filter":
            reason = choice.message.refusal or "content filter"
            raise AIError(f"{what} refused by the content policy: {reason}", retryable=False)
        if choice.finish_reason == "length":
            raise InvalidAIOutput(f"{what}: the answer was cut off at the token limit")
        try:
            return schema.model_validate_json(choice.message.content or "")
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidAIOutput(f"{what}: invalid JSON answer ({first['type']} at {first['loc']})") from exc


# --- validation and conversion ---------------------------------------------------------------------------------


def checked_clusters(reply: _ClusterReply, given: set[int], known: set[int]) -> list[ClusterOut]:
    """Clusters only if every given keyword is assigned exactly once and existing ids are real."""
    assigned = [i for c in reply.clusters for i in c.keyword_ids]
    if sorted(assigned) != sorted(given):
        raise InvalidAIOutput("cluster_keywords did not assign every keyword exactly once")
    if any(c.existing_id is not None and c.existing_id not in known for c in reply.clusters):
        raise InvalidAIOutput("cluster_keywords named an existing cluster that does not exist")
    return [ClusterOut(name=" ".join(c.name.split()), description=c.description.strip(),
                       keyword_ids=tuple(c.keyword_ids), existing_id=c.existing_id) for c in reply.clusters]


def checked_ideas(reply: _IdeasReply, taken_titles: frozenset[str]) -> list[IdeaOut]:
    """Drops taken or repeated titles, keeps at most 5, and refuses fewer than 3."""
    seen = {t.strip().casefold() for t in taken_titles}
    ideas: list[IdeaOut] = []
    for item in reply.ideas:
        title = " ".join(item.title.split())
        if title.casefold() in seen:
            continue
        seen.add(title.casefold())
        outline = tuple(OutlineSection(h2=s.h2.strip(), h3s=tuple(h.strip() for h in s.h3s if h.strip()))
                        for s in item.outline)
        ideas.append(IdeaOut(title=title, content_type=item.content_type.strip().lower(),
                             target_keywords=tuple(item.target_keywords), outline=outline,
                             description=item.description.strip()))
    if len(ideas) < 3:
        raise InvalidAIOutput(f"generate_ideas returned {len(ideas)} usable ideas, 3 are needed")
    return ideas[:5]


def build_article(reply: _ArticleReply) -> ArticleOut:
    """An article from the model's markdown, meta fields trimmed to their limits."""
    markdown = reply.markdown.strip() + "\n"
    blocks = markdown_blocks(markdown)
    sections = tuple(text for kind, text in blocks if kind == "h2")
    if not sections:
        raise InvalidAIOutput("generate_content returned markdown without any '## ' section")
    title = " ".join(reply.title.split())
    description = " ".join(reply.meta_description.split())
    return ArticleOut(
        title=title,
        meta_title=clip(reply.meta_title, 60),
        meta_description=description if len(description) <= 160 else clip(description, 156) + "...",
        slug=slugify(reply.slug or title),
        html=render_html(blocks),
        markdown=markdown,
        word_count=count_words(markdown),
        sections=sections,
    )


def build_prompts(reply: _PromptsReply) -> list[ImagePromptOut]:
    """Positions assigned here (0 featured, then 1..), at most 5 in-article prompts."""
    prompts = [ImagePromptOut(kind="featured", position=0, prompt=reply.featured.strip())]
    prompts += [ImagePromptOut(kind="in_article", position=n, prompt=p.prompt.strip(), section=p.section.strip())
                for n, p in enumerate(reply.in_article[:5], start=1)]
    return prompts


Kind = Literal["h1", "h2", "h3", "p", "ul"]
Block = tuple[Kind, str]
_LEVELS: dict[int, Kind] = {1: "h1", 2: "h2", 3: "h3"}
_HEADING = re.compile(r"^(#{1,3})\s+(.*?)\s*#*$")
_LIST_ITEM = re.compile(r"^[-*]\s+")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def markdown_blocks(markdown: str) -> list[Block]:
    """Headings (#, ##, ###), paragraphs and '- ' lists; a list's items are joined with newlines."""
    blocks: list[Block] = []
    paragraph: list[str] = []
    items: list[str] = []
    for raw in markdown.splitlines():
        line = raw.strip()
        heading = _HEADING.match(line)
        if not line or heading:
            blocks += _flush(paragraph, items)
        if heading:
            blocks.append((_LEVELS[len(heading.group(1))], heading.group(2)))
        elif _LIST_ITEM.match(line):
            blocks += _flush(paragraph, [])
            items.append(_LIST_ITEM.sub("", line))
        elif line:
            blocks += _flush([], items)
            paragraph.append(line)
    return blocks + _flush(paragraph, items)


def _flush(paragraph: list[str], items: list[str]) -> list[Block]:
    """The pending paragraph and list as blocks; empties both lists."""
    out: list[Block] = []
    if paragraph:
        out.append(("p", " ".join(paragraph)))
    if items:
        out.append(("ul", "\n".join(items)))
    paragraph.clear()
    items.clear()
    return out


def render_html(blocks: list[Block]) -> str:
    """Escaped HTML, with **bold** as <strong>."""
    def inline(text: str) -> str:
        return _BOLD.sub(r"<strong>\1</strong>", html.escape(text))

    parts = [f"<ul>{''.join(f'<li>{inline(i)}</li>' for i in text.split(chr(10)))}</ul>" if kind == "ul"
             else f"<{kind}>{inline(text)}</{kind}>" for kind, text in blocks]
    return "\n".join(parts) + "\n"


def _b64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise InvalidAIOutput("generate_image: b64_json is not valid base64") from exc


def as_png(raw: bytes) -> ImageOut:
    """PNG bytes (converted with Pillow when the API sent another format) and the real size."""
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            if raw.startswith(PNG_MAGIC):
                return ImageOut(png=raw, width=image.width, height=image.height)
            out = io.BytesIO()
            image.save(out, format="PNG")
            return ImageOut(png=out.getvalue(), width=image.width, height=image.height)
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidAIOutput(f"generate_image: the image could not be decoded ({exc})") from exc


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), capped; None if absent."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return min(max(float(value) / 1000, 0.0), MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def describe(exc: Exception) -> str:
    """A short cause for error messages: HTTP status and message, or the exception type."""
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
