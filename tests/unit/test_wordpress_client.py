"""shared.wordpress against answers a real WordPress rarely gives on demand: a site in a subdirectory, a
move to https, plain permalinks, proxies' error pages, PHP notices before the JSON, timeouts.
tests/integration/test_wordpress_client.py covers the real thing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from shared.wordpress import PostFields, WordPressClient, WordPressError, WordPressSite, _header_filename

SITE = WordPressSite("https://example.com/blog", "editor", "abcd efgh ijkl mnop qrst uvwx")
INDEX = {"namespaces": ["wp/v2"], "routes": {}}


def client(handler: Callable[[httpx.Request], httpx.Response], site: WordPressSite = SITE) -> WordPressClient:
    return WordPressClient(site, transport=httpx.MockTransport(handler))


def me(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": 7, "name": "Ed", "extra": "ignored"})


async def test_a_site_in_a_subdirectory_with_pretty_permalinks() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        assert request.headers["authorization"].startswith("Basic ")
        return httpx.Response(200, json=INDEX) if request.url.path == "/blog/wp-json/" else me(request)

    async with client(handler, WordPressSite("https://example.com/blog/ ", "editor", "pw")) as wp:
        assert await wp.check() == {"id": 7, "name": "Ed"}
        await wp.check()
    root = "https://example.com/blog/wp-json/"
    assert seen == [root, f"{root}wp/v2/users/me?context=edit", f"{root}wp/v2/users/me?context=edit"]


async def test_plain_permalinks_fall_back_to_rest_route_and_a_move_to_https_is_kept() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.scheme == "http":
            return httpx.Response(301, headers={"Location": str(request.url.copy_with(scheme="https"))})
        if request.url.path.endswith("/wp-json/"):
            return httpx.Response(404, html="<html>Page not found</html>")
        if request.url.params.get("rest_route") == "/":
            return httpx.Response(200, json=INDEX)
        assert request.url.params["rest_route"] == "/wp/v2/users/me"
        return me(request)

    async with client(handler, WordPressSite("http://example.com/blog", "editor", "pw")) as wp:
        await wp.check()
    assert seen[-1] == "https://example.com/blog/?rest_route=%2Fwp%2Fv2%2Fusers%2Fme&context=edit"


async def test_no_rest_api_at_the_address() -> None:
    async with client(lambda request: httpx.Response(200, html="<html>a shop</html>")) as wp:
        with pytest.raises(WordPressError, match=r"no WordPress REST API at https://example\.com/blog") as caught:
            await wp.check()
    assert not caught.value.retryable


@pytest.mark.parametrize(("response", "retryable", "text"), [
    (httpx.Response(502, html="<html><h1>502 Bad Gateway</h1></html>"), True, "HTTP 502 Bad Gateway: 502 Bad Gateway"),
    (httpx.Response(429, json={"code": "too_many", "message": "Slow down."}), True, "Slow down. (HTTP 429, too_many)"),
    (httpx.Response(403, json={"code": "rest_cannot_create", "message": "Sorry, you are not allowed to create "
                               "posts as this user.", "data": {"status": 403}}), False,
     "Sorry, you are not allowed to create posts as this user. (HTTP 403, rest_cannot_create): the WordPress user"),
    (httpx.Response(301, headers={"Location": "https://elsewhere.example/"}), False, "a redirect to"),
])
async def test_errors_say_whether_to_try_again(response: httpx.Response, retryable: bool, text: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=INDEX) if request.url.path.endswith("/wp-json/") else response

    async with client(handler) as wp:
        with pytest.raises(WordPressError) as caught:
            await wp.create_post(PostFields(title="t", content="c"))
    assert caught.value.retryable is retryable
    assert text in str(caught.value)
    assert SITE.application_password not in str(caught.value) + repr(caught.value)


async def test_a_timeout_is_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with client(handler) as wp:
        with pytest.raises(WordPressError, match="did not answer within 30s") as caught:
            await wp.check()
    assert caught.value.retryable and caught.value.status is None


async def test_a_php_notice_before_the_json_does_not_hide_the_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/wp-json/"):
            return httpx.Response(200, json=INDEX)
        body = "<br />\n<b>Deprecated</b>: Creation of dynamic property in x.php<br />\n"
        return httpx.Response(201, text=body + json.dumps({"id": 12, "link": "https://example.com/blog/?p=12"}))

    async with client(handler) as wp:
        assert await wp.create_post(PostFields(title="t", content="c")) == (12, "https://example.com/blog/?p=12")


async def test_the_post_body_is_what_core_wordpress_takes() -> None:
    when = datetime(2031, 5, 6, 9, 30, 15, 999, tzinfo=timezone(timedelta(hours=2)))
    fields = PostFields(title="T", content="<p>C</p>", status="future", date_gmt=when, categories=[3], tags=[4, 5],
                        meta_title="T | Site", meta_description="About T.")
    assert fields.body() == {"title": "T", "content": "<p>C</p>", "excerpt": "About T.", "status": "future",
                             "featured_media": 0, "categories": [3], "tags": [4, 5],
                             "date_gmt": "2031-05-06T07:30:15"}
    assert PostFields(title="T", content="", excerpt="Own.", slug="t", meta_description="About T.").body()[
        "excerpt"] == "Own."
    assert "application_password" not in repr(SITE) and SITE.application_password not in str(SITE)


@pytest.mark.parametrize(("name", "sent"), [
    ("Crème brûlée: the recipe.PNG", "Creme brulee- the recipe.png"),
    ("日本.jpg", "upload.jpg"),
    ('a"b;c.webp', "a-b-c.webp"),
    ("no extension", "no extension"),
])
def test_upload_file_names_fit_a_header(name: str, sent: str) -> None:
    assert _header_filename(name) == sent
