"""shared.wordpress against a real WordPress (Debian's 6.1, a fresh site per test; see tests/wordpress.py):
credentials, media, terms, posts created and updated, posts removed in WordPress, and an outage."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from shared.wordpress import PostFields, Taxonomy, WordPressClient, WordPressError
from tests.wordpress import ThrowawayWordPress, throwaway_wordpress


@pytest.fixture(autouse=True)
def empty_outbox() -> None:
    """These tests use neither the outbox nor the database (the integration conftest empties it)."""


@pytest.fixture
async def wordpress(tmp_path: Path) -> AsyncIterator[ThrowawayWordPress]:
    async with throwaway_wordpress(tmp_path) as site:
        yield site


@pytest.fixture
async def wp(wordpress: ThrowawayWordPress) -> AsyncIterator[WordPressClient]:
    async with WordPressClient(wordpress.site, timeout=10) as client:
        yield client


def png(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_check_proves_the_credentials(wp: WordPressClient) -> None:
    assert await wp.check() == {"id": 1, "name": "admin"}


async def test_the_application_password_works_with_or_without_its_spaces(wordpress: ThrowawayWordPress) -> None:
    password = wordpress.site.application_password
    assert " " in password  # as WordPress shows it: "abcd efgh ijkl mnop qrst uvwx"
    async with WordPressClient(replace(wordpress.site, application_password=password.replace(" ", ""))) as wp:
        assert (await wp.check())["id"] == 1


async def test_a_wrong_password_is_refused_for_good_in_wordpress_words(wordpress: ThrowawayWordPress) -> None:
    wrong = "abcd efgh ijkl mnop qrst uvwx"
    site = replace(wordpress.site, application_password=wrong)
    async with WordPressClient(site) as wp:
        with pytest.raises(WordPressError) as caught:
            await wp.check()
    error = caught.value
    assert (error.status, error.retryable) == (401, False)
    # WordPress 6.1 checks the application password after looking for its errors, so it answers as to a
    # request without credentials; later versions name the password.
    assert (error.code, error.message) in {
        ("rest_not_logged_in", "You are not currently logged in."),
        ("incorrect_password", "The provided password is an invalid application password.")}
    assert error.message in str(error) and "application password" in str(error)
    for text in (str(error), repr(error), repr(site), str(site), repr(wp)):
        assert wrong not in text and wrong.replace(" ", "") not in text
        assert wordpress.site.application_password not in text


async def test_an_uploaded_image_is_served_at_its_url(wordpress: ThrowawayWordPress, wp: WordPressClient) -> None:
    image = png()
    media_id, url = await wp.upload_media("Crème brûlée: the recipe.png", image, "image/png",
                                          alt_text="A crème brûlée", caption="Fresh from the oven")
    assert url.startswith(wordpress.url + "/wp-content/uploads/") and url.endswith(".png")
    async with httpx.AsyncClient() as http:
        served = await http.get(url)
    assert served.status_code == 200 and served.content == image
    [media] = await wordpress.media()
    assert media["id"] == media_id and media["mime_type"] == "image/png"
    assert media["alt_text"] == "A crème brûlée"
    assert media["caption"]["raw"] == "Fresh from the oven"


@pytest.mark.parametrize("taxonomy", ["categories", "tags"])
async def test_ensure_term_finds_what_it_made(wordpress: ThrowawayWordPress, wp: WordPressClient,
                                              taxonomy: Taxonomy) -> None:
    names = ["Food & Drinks", "Café crème", "Tips"]
    ids = [await wp.ensure_term(taxonomy, name) for name in names]
    assert len(set(ids)) == 3
    assert [await wp.ensure_term(taxonomy, name) for name in names] == ids
    # WordPress compares names ignoring case; "Tips" is not "Tips & Tricks", which a search also finds
    assert await wp.ensure_term(taxonomy, "CAFÉ CRÈME") == ids[1]
    assert await wp.ensure_term(taxonomy, "Tips & Tricks") not in ids
    stored = (await wordpress.rest("GET", f"wp/v2/{taxonomy}/{ids[0]}")).json()
    assert stored["name"] == "Food &amp; Drinks"  # how WordPress keeps it


async def test_ensure_term_at_once_from_several_consumers_makes_one_term(wordpress: ThrowawayWordPress,
                                                                        wp: WordPressClient) -> None:
    """The losers of the race get WordPress's 'term_exists', which names the winner's term."""
    ids = await asyncio.gather(*(wp.ensure_term("tags", "Zürich & Genève") for _ in range(4)))
    assert len(set(ids)) == 1
    tags = (await wordpress.rest("GET", "wp/v2/tags", params={"per_page": "100"})).json()
    assert [tag["id"] for tag in tags] == [ids[0]]


async def test_a_draft_with_image_and_terms_then_updated_in_place(wordpress: ThrowawayWordPress,
                                                                 wp: WordPressClient) -> None:
    media_id, _ = await wp.upload_media("cover.png", png(), "image/png")
    category = await wp.ensure_term("categories", "Recipes")
    tags = [await wp.ensure_term("tags", "baking"), await wp.ensure_term("tags", "French")]
    before = len(await wordpress.posts())
    fields = PostFields(title="Crème brûlée", content="<p>Custard &amp; caramel.</p>", slug="creme-brulee",
                        featured_media=media_id, categories=[category], tags=tags,
                        meta_title="Crème brûlée | Recipes", meta_description="The classic, step by step.")

    post_id, link = await wp.create_post(fields)
    assert link.startswith(wordpress.url)
    post = await wp.get_post(post_id)
    assert post is not None
    assert (post["status"], post["title"]["raw"], post["slug"]) == ("draft", "Crème brûlée", "creme-brulee")
    assert post["content"]["raw"] == "<p>Custard &amp; caramel.</p>"
    assert post["excerpt"]["raw"] == "The classic, step by step."  # no excerpt: the meta description
    assert (post["featured_media"], post["categories"], sorted(post["tags"])) == (media_id, [category], sorted(tags))

    updated = replace(fields, title="Crème brûlée, the classic", status="publish", featured_media=None, tags=[])
    assert (await wp.update_post(post_id, updated))[0] == post_id
    post = await wp.get_post(post_id)
    assert post is not None
    assert (post["title"]["raw"], post["status"]) == ("Crème brûlée, the classic", "publish")
    assert (post["featured_media"], post["tags"]) == (0, [])
    assert len(await wordpress.posts()) == before + 1


async def test_a_future_post_is_scheduled_for_its_date(wp: WordPressClient) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    post_id, _ = await wp.create_post(PostFields(title="Later", content="<p>Soon.</p>", status="future",
                                                 date_gmt=when))
    post = await wp.get_post(post_id)
    assert post is not None
    assert post["status"] == "future"
    assert post["date_gmt"] == when.replace(tzinfo=None).isoformat()
    with pytest.raises(ValueError, match="date_gmt"):
        PostFields(title="Later", content="", status="future")


@pytest.mark.parametrize("force", [True, False], ids=["deleted", "trashed"])
async def test_a_post_removed_in_wordpress_is_gone(wordpress: ThrowawayWordPress, wp: WordPressClient,
                                                  force: bool) -> None:
    fields = PostFields(title="Short-lived", content="<p>Bye.</p>", status="publish")
    post_id, _ = await wp.create_post(fields)
    await wordpress.delete_post(post_id, force=force)

    assert await wp.get_post(post_id) is None
    with pytest.raises(WordPressError) as caught:
        await wp.update_post(post_id, replace(fields, title="Back?"))
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (404, "rest_post_invalid_id", False)
    if not force:  # still in the trash, untouched: an update would have restored it
        trashed = (await wordpress.rest("GET", f"wp/v2/posts/{post_id}", params={"context": "edit"})).json()
        assert (trashed["status"], trashed["title"]["raw"]) == ("trash", "Short-lived")


async def test_an_outage_is_retryable_and_the_client_carries_on(wordpress: ThrowawayWordPress,
                                                                wp: WordPressClient) -> None:
    await wp.check()
    await wordpress.stop()
    started = time.monotonic()
    with pytest.raises(WordPressError) as caught:
        await wp.check()
    assert time.monotonic() - started < 2
    assert caught.value.retryable and caught.value.status is None
    assert wordpress.site.application_password not in str(caught.value)

    await wordpress.start()
    assert (await wp.check())["id"] == 1


async def test_a_site_without_pretty_permalinks_is_reached_by_rest_route(tmp_path: Path) -> None:
    """/wp-json/ is the front page there (HTML); ?rest_route= works on every WordPress."""
    async with throwaway_wordpress(tmp_path, permalinks="") as wordpress:
        async with httpx.AsyncClient() as http:
            assert "json" not in (await http.get(f"{wordpress.url}/wp-json/")).headers["content-type"]
        site = replace(wordpress.site, base_url=wordpress.url + "/")  # as typed, trailing slash and all
        async with WordPressClient(site) as wp:
            assert (await wp.check())["id"] == 1
            media_id, _ = await wp.upload_media("a.png", png(), "image/png")
            post_id, _ = await wp.create_post(PostFields(title="Plain", content="<p>x</p>", featured_media=media_id))
            assert (await wp.update_post(post_id, PostFields(title="Plainer", content="<p>x</p>")))[0] == post_id
        assert sorted(post["title"]["raw"] for post in await wordpress.posts()) == ["Hello world!", "Plainer"]
