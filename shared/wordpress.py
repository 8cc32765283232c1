"""An async client for the WordPress REST API (core WordPress, no plugin needed), for publishing articles.

It authenticates with an application password (WordPress 5.6+) over HTTP Basic auth: the one way core
WordPress lets a remote program write without a browser session, and one the site owner can revoke alone.

Every failure is a `WordPressError` saying whether trying again later can help (`retryable`), so a consumer
can retry an outage and dead-letter a wrong password. The password appears in no message and no repr.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self, TypedDict

import httpx

log = logging.getLogger(__name__)

Taxonomy = Literal["categories", "tags"]
PostStatus = Literal["draft", "publish", "future"]

# Statuses worth another attempt later: the site (or a proxy in front of it) is overloaded or down for a while.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


class WordPressError(Exception):
    """A request WordPress refused or that did not reach it.

    `message` is WordPress's own text when it sent one (its error body is `{code, message, data}`), so what
    the site owner reads is what their WordPress says; `code` is WordPress's error code ('incorrect_password',
    'rest_cannot_create', 'term_exists') for callers that act on a specific refusal; `data` is the error's
    `data` object (a 'term_exists' error names the existing term there). `retryable` is true for outages
    (5xx, 429, timeouts, connection errors), false for what will fail the same way again (401, 403, 400).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retryable: bool | None = None, data: dict[str, Any] | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = status in RETRYABLE_STATUSES if retryable is None else retryable
        self.data = data or {}
        self.hint = hint

    def __str__(self) -> str:
        detail = ", ".join(part for part in (f"HTTP {self.status}" if self.status else "", self.code or "") if part)
        text = f"{self.message} ({detail})" if detail else self.message
        return f"{text}: {self.hint}" if self.hint else text

    def __repr__(self) -> str:
        return f"WordPressError({self.message!r}, status={self.status!r}, code={self.code!r}, " \
               f"retryable={self.retryable!r})"


# WordPress answers 401 to a request it could not tie to a user, whatever the reason: WordPress 6.1 reports a
# wrong application password as 'rest_not_logged_in' ("You are not currently logged in."), since it checks
# the password only after looking for password errors, so its own words do not name the usual causes.
UNAUTHORIZED_HINT = ("WordPress did not accept the username and application password (an application password "
                     "from Users > Profile, not the login password; some web servers also drop the "
                     "Authorization header)")
FORBIDDEN_HINT = "the WordPress user is not allowed to do this (publishing needs an Author, Editor or Administrator)"


@dataclass(frozen=True)
class WordPressSite:
    """Where to publish and as whom. `base_url` is the site's address as its owner knows it (the client finds
    the REST API under it); the application password is kept out of repr so it cannot reach a log line."""

    base_url: str
    username: str
    application_password: str = field(repr=False)


@dataclass(frozen=True)
class PostFields:
    """Everything the client sets on a post; an update sends all of it, so the post ends up as described
    whatever was edited in WordPress meanwhile.

    Core WordPress has no SEO title or description field: `meta_title` is kept for callers (and for SEO
    plugins' own integrations) but not sent, and `meta_description` becomes the excerpt when `excerpt` is
    empty, which is what themes print as the page's description. `date_gmt` (naive means UTC) is required for
    'future', WordPress's scheduled status; a 'future' date that has passed makes WordPress publish at once,
    and a 'publish' with a future date makes it scheduled. An empty `slug` lets WordPress derive one.
    """

    title: str
    content: str
    excerpt: str = ""
    slug: str = ""
    status: PostStatus = "draft"
    date_gmt: datetime | None = None
    featured_media: int | None = None
    categories: list[int] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)
    meta_title: str = ""
    meta_description: str = ""

    def __post_init__(self) -> None:
        if self.status == "future" and self.date_gmt is None:
            raise ValueError("a 'future' post needs date_gmt: WordPress would publish it at once")

    def body(self) -> dict[str, Any]:
        """The REST API's post object. featured_media 0 removes a featured image set earlier."""
        body: dict[str, Any] = {
            "title": self.title, "content": self.content, "excerpt": self.excerpt or self.meta_description,
            "status": self.status, "featured_media": self.featured_media or 0,
            "categories": list(self.categories), "tags": list(self.tags)}
        if self.slug:
            body["slug"] = self.slug
        if self.date_gmt is not None:
            when = self.date_gmt.astimezone(UTC) if self.date_gmt.tzinfo else self.date_gmt
            body["date_gmt"] = when.replace(tzinfo=None, microsecond=0).isoformat()
        return body


class WordPressUser(TypedDict):
    id: int
    name: str


@dataclass(frozen=True)
class _RestRoot:
    """Where routes live: `https://site/wp-json/<route>` with pretty permalinks, or
    `https://site/?rest_route=/<route>`, which every WordPress answers, pretty permalinks or not."""

    url: str
    query_style: bool

    def locate(self, route: str) -> tuple[str, dict[str, str]]:
        route = route.strip("/")
        if self.query_style:
            return self.url, {"rest_route": f"/{route}"}
        return self.url + route, {}


class WordPressClient:
    """One site's REST API. Use as `async with WordPressClient(site) as wp:`; the connection pool and the
    REST root found on the first call are kept until the block ends."""

    def __init__(self, site: WordPressSite, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.site = site
        self._base = site.base_url.strip().rstrip("/")
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            auth=httpx.BasicAuth(site.username, site.application_password), timeout=timeout,
            transport=transport, follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "automation-publisher (httpx)"})
        self._root: _RestRoot | None = None
        self._root_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WordPressClient({self.site!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the operations ----------------------------------------------------------------------------------------

    async def check(self) -> WordPressUser:
        """Proves the address and the credentials with a request that needs them (`context=edit` is refused
        to anonymous callers), before anything is written."""
        me = await self._request("GET", "wp/v2/users/me", params={"context": "edit"})
        return {"id": int(me["id"]), "name": str(me["name"])}

    async def upload_media(self, filename: str, data: bytes, mime_type: str, *, alt_text: str = "",
                           caption: str = "") -> tuple[int, str]:
        """Uploads a file as the raw request body (no multipart encoding of megabytes of image). Returns the
        attachment's id (for `featured_media`) and the URL WordPress serves it at (for the article's HTML)."""
        params = {key: value for key, value in (("alt_text", alt_text), ("caption", caption)) if value}
        headers = {"Content-Type": mime_type,
                   "Content-Disposition": f'attachment; filename="{_header_filename(filename)}"'}
        media = await self._request("POST", "wp/v2/media", params=params, content=data, headers=headers)
        return int(media["id"]), str(media["source_url"])

    async def ensure_term(self, taxonomy: Taxonomy, name: str) -> int:
        """The id of the category or tag named `name`, created when there is none, so publishing twice (or
        two articles at once) does not make duplicates.

        WordPress keeps a name as sanitized text, tags stripped and HTML-escaped ('A &amp; B'), and searches
        that stored text for substrings; so the search is for the name as WordPress would store it, and the
        names found are compared whole, unescaped, ignoring case as WordPress does. A term created meanwhile
        makes WordPress answer 'term_exists' with the term's id, which is as good as finding it.
        """
        plain = _plain_name(name)
        if not plain:
            raise ValueError(f"no name for a term of {taxonomy}")
        if found := await self._terms_named(taxonomy, plain):
            return found[0]
        try:
            created = int((await self._request("POST", f"wp/v2/{taxonomy}", json={"name": plain}))["id"])
        except WordPressError as exc:
            if exc.code == "term_exists" and "term_id" in exc.data:  # the oldest, as the creators below keep
                return min(await self._terms_named(taxonomy, plain) or [int(exc.data["term_id"])])
            raise
        # WordPress's own check before inserting is not atomic: two creators at once can both succeed. Every
        # creator then keeps the oldest term of the name and removes its own if it is not that one.
        winner = min(await self._terms_named(taxonomy, plain) or [created])
        if winner != created:
            try:
                await self._request("DELETE", f"wp/v2/{taxonomy}/{created}", params={"force": "true"})
            except WordPressError:
                log.warning("could not remove the duplicate %s term %d", taxonomy, created)
        return winner

    async def _terms_named(self, taxonomy: Taxonomy, plain: str) -> list[int]:
        """Ids of the terms whose name is `plain` (compared as WordPress does), oldest first."""
        found = await self._request("GET", f"wp/v2/{taxonomy}", params={
            "search": html.escape(plain, quote=False), "per_page": "100", "_fields": "id,name"})
        return sorted(int(term["id"]) for term in (found if isinstance(found, list) else [])
                      if _plain_name(str(term.get("name", ""))).casefold() == plain.casefold())

    async def create_post(self, fields: PostFields) -> tuple[int, str]:
        """Returns the post's id (kept to update it later) and its link (a `?p=<id>` link until it is
        published)."""
        post = await self._request("POST", "wp/v2/posts", json=fields.body())
        return int(post["id"]), str(post["link"])

    async def update_post(self, post_id: int, fields: PostFields) -> tuple[int, str]:
        """Rewrites a post published earlier. A post deleted in WordPress, or moved to its trash, raises
        WordPressError with status 404 ('rest_post_invalid_id'): the site owner removed it, and the caller
        decides whether to publish it anew. Updating a trashed post would quietly bring it back."""
        if await self.get_post(post_id) is None:
            raise WordPressError(f"Post {post_id} is gone: deleted or in the trash.", status=404,
                                 code="rest_post_invalid_id", retryable=False)
        post = await self._request("POST", f"wp/v2/posts/{post_id}", json=fields.body())
        return int(post["id"]), str(post["link"])

    async def get_post(self, post_id: int) -> dict[str, Any] | None:
        """The post as an editor sees it (raw fields, drafts included), or None when it was deleted or is in
        the trash."""
        try:
            post = await self._request("GET", f"wp/v2/posts/{post_id}", params={"context": "edit"})
        except WordPressError as exc:
            if exc.status == 404 and exc.code == "rest_post_invalid_id":
                return None
            raise
        if not isinstance(post, dict) or post.get("status") == "trash":
            return None
        return post

    async def find_posts(self, title: str, slug: str, since: datetime) -> list[tuple[int, str]]:
        """Posts with this exact title and slug (or the slug WordPress made unique from it, `slug-2`)
        changed since `since`, newest first: where a publisher that crashed between creating a post and
        storing its id looks for that post instead of creating a second one. More than one can match
        (another article with the same title published there moments before); the caller tells which
        are already someone else's."""
        after = since.astimezone(UTC).replace(tzinfo=None) - timedelta(seconds=5)
        posts = await self._request("GET", "wp/v2/posts", params={
            "context": "edit", "status": "any", "search": title[:100], "per_page": "100",
            "modified_after": after.isoformat(timespec="seconds"), "orderby": "id", "order": "desc"})
        unique = re.compile(rf"^{re.escape(slug)}(?:-\d+)?$")
        return [(int(post["id"]), str(post["link"])) for post in (posts if isinstance(posts, list) else [])
                if (post.get("title") or {}).get("raw", "") == title
                and unique.match(str(post.get("slug") or post.get("generated_slug") or ""))]

    # -- HTTP --------------------------------------------------------------------------------------------------

    async def _request(self, method: str, route: str, *, params: dict[str, str] | None = None,
                       json: Any = None, content: bytes | None = None,
                       headers: dict[str, str] | None = None) -> Any:
        url, query = (await self._rest_root()).locate(route)
        response = await self._send(method, url, params={**query, **(params or {})}, json=json, content=content,
                                    headers=headers)
        if response.is_redirect:
            raise WordPressError(
                f"WordPress answered {method} {route} with a redirect to {response.headers.get('location')!r}; "
                "the site's address may have changed", status=response.status_code, retryable=False)
        body = _json_body(response)
        if not response.is_success:
            raise _error(response, body)
        if body is None:
            raise WordPressError(f"WordPress answered {method} {route} with something that is not JSON",
                                 status=response.status_code, retryable=False)
        return body

    async def _send(self, method: str, url: str, *, follow_redirects: bool = False, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, follow_redirects=follow_redirects, **kwargs)
        except httpx.TimeoutException as exc:
            raise WordPressError(f"WordPress at {self._base} did not answer within {self._timeout:g}s "
                                 f"({type(exc).__name__})", retryable=True) from exc
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL,
                httpx.TooManyRedirects) as exc:
            raise WordPressError(f"cannot send to {self._base!r}: {exc}", retryable=False) from exc
        except httpx.TransportError as exc:
            raise WordPressError(f"could not reach WordPress at {self._base}: {exc or type(exc).__name__}",
                                 retryable=True) from exc

    async def _rest_root(self) -> _RestRoot:
        if self._root is None:
            async with self._root_lock:
                if self._root is None:
                    self._root = await self._discover()
                    log.debug("REST API of %s: %s", self._base, self._root)
        return self._root

    async def _discover(self) -> _RestRoot:
        """Tries /wp-json/ (pretty permalinks, the usual case), then ?rest_route=/ (works on every site).
        Redirects are followed here only, and where they end is kept: a site that moved to https or to
        www. answers every later request directly, and no POST is ever turned into a GET by a redirect."""
        if not re.match(r"https?://[^/]", self._base, re.IGNORECASE):
            raise WordPressError(f"{self._base!r} is not a site address (http:// or https://)", retryable=False)
        last: httpx.Response | None = None
        for query_style in (False, True):
            if query_style:
                response = await self._send("GET", f"{self._base}/", params={"rest_route": "/"},
                                            follow_redirects=True)
            else:
                response = await self._send("GET", f"{self._base}/wp-json/", follow_redirects=True)
            body = _json_body(response)
            if isinstance(body, dict) and ("namespaces" in body or "routes" in body
                                           or ("code" in body and "message" in body)):
                where = str(response.url.copy_with(query=None))
                return _RestRoot(where if where.endswith("/") else where + "/", query_style)
            if response.status_code in RETRYABLE_STATUSES:
                raise _error(response, body)
            last = response
        status = last.status_code if last is not None else None
        raise WordPressError(f"no WordPress REST API at {self._base} (tried /wp-json/ and ?rest_route=/)",
                             status=status, retryable=False)


def _json_body(response: httpx.Response) -> Any:
    """The response's JSON, or None. Tolerates what a PHP notice or a plugin printed before the JSON, which
    breaks many real sites' responses but not their data."""
    text = response.text
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for start in sorted({i for i in (text.find("{"), text.find("[")) if i > 0}):
        try:
            return decoder.raw_decode(text, start)[0]
        except ValueError:
            continue
    return None


def _error(response: httpx.Response, body: Any) -> WordPressError:
    hint = {401: UNAUTHORIZED_HINT, 403: FORBIDDEN_HINT}.get(response.status_code, "")
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        data = body.get("data")
        return WordPressError(body["message"], status=response.status_code,
                              code=str(body["code"]) if body.get("code") is not None else None,
                              data=data if isinstance(data, dict) else None, hint=hint)
    # Not WordPress speaking: a proxy, the web server or a PHP fatal error page.
    snippet = " ".join(re.sub(r"<[^>]*>", " ", response.text).split())[:200]
    message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return WordPressError(f"{message}: {snippet}" if snippet else message, status=response.status_code, hint=hint)


def _plain_name(name: str) -> str:
    """A term name as text: entities decoded, tags dropped, white space collapsed (as WordPress does)."""
    return " ".join(re.sub(r"<[^>]*>", "", html.unescape(name)).split())


def _header_filename(filename: str) -> str:
    """WordPress reads only a plain `filename=` (no RFC 5987 `filename*=`), and a header is ASCII, so the
    name is transliterated; WordPress sanitizes it again anyway."""
    match = re.search(r"\.[A-Za-z0-9]{1,8}$", filename)
    extension = match.group(0).lower() if match else ""
    stem = filename[:len(filename) - len(extension)]
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    return (re.sub(r"[^A-Za-z0-9._ -]+", "-", ascii_stem).strip(" .-") or "upload") + extension
