"""The `openai` provider: any OpenAI-compatible API behind the `AIProvider` interface.

Chat calls ask for one JSON object whose shape the system prompt spells out (`ai.openai_schemas`);
the reply is validated with pydantic here and then checked and converted (`ai.openai_replies`: every
keyword once, enough ideas, ...) so a sloppy answer becomes a retryable `InvalidAIOutput` instead of
bad rows. Articles come back as markdown: HTML, sections and the word count are derived from it,
never trusted from the model.

Transport failures are retried here, a few times and briefly (429 honours Retry-After,
5xx/timeouts back off exponentially with jitter); after that the pipeline's message-level
retry takes over. Refusals and other 4xx are final. One semaphore per process and event
loop bounds the calls in flight, so a large run cannot turn into a retry storm.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import openai
from pydantic import BaseModel, ValidationError

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
    TransientAIError,
)
from ai.openai_replies import as_png, b64_image, build_article, build_prompts, checked_clusters, checked_ideas
from ai.openai_schemas import (
    CLUSTER_PROMPT,
    CONTENT_PROMPT,
    IDEAS_PROMPT,
    PROMPTS_PROMPT,
    ArticleReply,
    ClusterReply,
    IdeasReply,
    PromptsReply,
)
from shared.settings import Settings

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_RETRY_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
REFUSAL_CODES = frozenset({"content_policy_violation", "moderation_blocked"})


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
        reply = await self._chat_json("cluster_keywords", CLUSTER_PROMPT, payload, ClusterReply)
        return checked_clusters(reply, {k.id for k in keywords}, {c.id for c in existing})

    async def generate_ideas(self, cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
        """One idea per intent (at most 5), with untaken, distinct titles and primary keywords."""
        payload = {"task": "generate_ideas",
                   "cluster": {"name": cluster.name, "description": cluster.description,
                               "keywords": list(cluster.keywords)},
                   "taken_titles": sorted(taken_titles)}
        reply = await self._chat_json("generate_ideas", IDEAS_PROMPT, payload, IdeasReply)
        return checked_ideas(reply, taken_titles, cluster.keywords)

    async def generate_content(self, idea: IdeaIn) -> ArticleOut:
        """The model writes markdown; HTML, sections and word count are derived from it here."""
        payload = {"task": "generate_content",
                   "idea": {"title": idea.title, "content_type": idea.content_type,
                            "target_keywords": list(idea.target_keywords),
                            "outline": [{"h2": s.h2, "h3s": list(s.h3s)} for s in idea.outline],
                            "description": idea.description, "cluster_name": idea.cluster_name}}
        reply = await self._chat_json("generate_content", CONTENT_PROMPT, payload, ArticleReply)
        return build_article(reply)

    async def generate_image_prompts(self, article: ArticleIn) -> list[ImagePromptOut]:
        """Featured prompt at position 0, then in-article prompts numbered from 1."""
        payload = {"task": "generate_image_prompts", "title": article.title,
                   "target_keywords": list(article.target_keywords), "sections": list(article.sections),
                   "markdown": article.markdown[:6000]}
        reply = await self._chat_json("generate_image_prompts", PROMPTS_PROMPT, payload, PromptsReply)
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
            raw = b64_image(first.b64_json)
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
        return float(ceiling * random.uniform(0.5, 1.0))

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
