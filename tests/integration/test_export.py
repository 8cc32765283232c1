"""A run's articles exported as a zip (shared.export) and downloaded (producers.api.export_routes).

One real pipeline run (in-process, offline provider) for the module; the zips are read back and
compared with the database: every article of the run, every generated image, front matter, image
references, manifest. The last tests edit that content (hostile and repeated slugs, a missing PNG,
an edited body), so they come after the round trips.
"""

from __future__ import annotations

import html
import io
import json
import posixpath
import re
import shutil
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from sqlalchemy import delete, select, update

from consumers.deps import Deps
from producers.api import export_routes
from shared.accounts import create_account, create_site
from shared.api_keys import create_api_key
from shared.article_html import markdown_heading_text, section_key
from shared.automation_logger import AutomationLogger
from shared.events import StartRun
from shared.export import NothingToExport, export_articles, safe_slug
from shared.media import image_path
from shared.models import AutomationRun, Cluster, Content, ContentIdea, Image, Keyword, OutboxMessage, Site, Task
from shared.outbox import NoRelay
from tests.support import Bus
from tests.unit.test_article_html import sequence

BASE = "/api/v1/automation"
QUICK = {"stage_4_batch_size": 4, "stage_5_batch_size": 4, "stage_6_batch_size": 8}
IMAGE_LINE = re.compile(r"^!\[[^\n]*\]\(([^)\s]+)\)$")


@dataclass
class Expected:
    """What the database holds for one article of the run."""

    content: dict[str, Any]
    primary_keyword: str | None
    cluster: str | None
    keywords: list[str]
    images: list[dict[str, Any]]

    @property
    def featured(self) -> dict[str, Any]:
        return next(i for i in self.images if i["kind"] == "featured")

    @property
    def in_article(self) -> list[dict[str, Any]]:
        return [i for i in self.images if i["kind"] == "in_article"]


@dataclass
class Finished:
    deps: Deps
    site: Site
    run: AutomationRun
    ids: list[int]
    key: dict[str, str]


@pytest.fixture(scope="module")
async def finished(settings, sessions, provider, make_module_site) -> Finished:
    """A run of the whole pipeline (16 keywords) on a site of its own, completed at the review gate."""
    deps = Deps(settings=settings, sessions=sessions, logger=AutomationLogger(settings.log_dir), provider=provider,
                relay=NoRelay(), worker_id="pytest-export")
    async with sessions() as session, session.begin():
        await session.execute(delete(OutboxMessage))  # as the integration tests' autouse fixture does
    site = await make_module_site(keywords=16, **QUICK)
    bus = Bus(deps)
    try:
        await bus.send(StartRun(site_id=site.id))
        await bus.pump()
    finally:
        await bus.close()
    async with sessions() as session, session.begin():
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
        key = await create_api_key(session, site.account_id)
    assert run is not None and run.status == "completed", run
    ids = list(run.stage_7_result["content_ids"])
    assert len(ids) >= 3
    return Finished(deps, site, run, ids, {"X-API-Key": key})


async def expected_articles(finished: Finished) -> dict[int, Expected]:
    async with finished.deps.sessions() as session:
        rows = (await session.execute(
            select(Content, ContentIdea.primary_keyword, Cluster.id, Cluster.name)
            .join(Task, Task.id == Content.task_id).join(ContentIdea, ContentIdea.id == Task.idea_id)
            .join(Cluster, Cluster.id == ContentIdea.cluster_id).where(Content.id.in_(finished.ids)))).all()
        out = {}
        for content, primary, cluster_id, cluster in rows:
            keywords = (await session.scalars(select(Keyword.keyword).where(Keyword.cluster_id == cluster_id))).all()
            images = (await session.scalars(select(Image).where(Image.content_id == content.id)
                                            .order_by(Image.position))).all()
            out[content.id] = Expected(
                content={c: getattr(content, c) for c in ("id", "title", "meta_title", "meta_description", "slug",
                                                          "html", "markdown", "status", "word_count", "created_at")},
                primary_keyword=primary, cluster=cluster, keywords=sorted(keywords),
                images=[{"id": i.id, "kind": i.kind, "position": i.position, "section": i.section, "status": i.status}
                        for i in images])
    return out


async def export(finished: Finished, fmt: str, ids: list[int] | None = None, **options: Any) -> zipfile.ZipFile:
    async with finished.deps.sessions() as session:
        result = await export_articles(session, finished.deps.settings.media_dir, finished.site.id,
                                       finished.ids if ids is None else ids, fmt, **options)
    data = result.file.read()
    result.file.close()
    assert len(data) == result.size > 0
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert json.loads(archive.read("manifest.json")) == result.manifest
    return archive


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def resolve(article_file: str, reference: str) -> str:
    """A reference inside an article, as a path inside the zip."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(article_file), reference))


def image_file(content_id: int, image_id: int) -> str:
    return f"images/{content_id}-{image_id}.png"


def assert_safe_names(archive: zipfile.ZipFile) -> None:
    for name in archive.namelist():
        assert not name.startswith("/") and ".." not in name.split("/") and "\\" not in name, name
        assert name in ("manifest.json", "index.html") or re.fullmatch(
            r"articles/[a-z0-9-]+\.(md|html)|images/\d+-\d+\.png", name), name


def assert_images_follow_their_section_in_markdown(body: str, file: str, expected: Expected) -> None:
    lines = body.split("\n")
    sections = {image_file(expected.content["id"], i["id"]): i["section"] for i in expected.in_article}
    placed = set()
    for n, line in enumerate(lines):
        image = IMAGE_LINE.match(line)
        if not image:
            continue
        name = resolve(file, image[1])
        placed.add(name)
        heading = next(lines[m] for m in range(n - 1, -1, -1) if lines[m].strip() and not IMAGE_LINE.match(lines[m]))
        assert heading.startswith("## "), (heading, line)
        assert section_key(markdown_heading_text(heading[3:])) == section_key(sections[name])
    assert placed == set(sections)
    # only whole image paragraphs were added
    assert "\n".join(line for line in lines if not IMAGE_LINE.match(line)).split() == \
        expected.content["markdown"].split()


def assert_images_follow_their_section_in_html(document: str, file: str, expected: Expected) -> None:
    order = sequence(document)
    sections = {image_file(expected.content["id"], i["id"]): i["section"] for i in expected.in_article}
    placed = [resolve(file, s[4:]) for s in order if s.startswith("img:")]
    assert placed == [image_file(expected.content["id"], expected.featured["id"]),
                      *sorted(sections, key=lambda name: order.index(f"img:../{name}"))]
    assert set(placed[1:]) == set(sections)
    for name, section in sections.items():
        at = order.index(f"img:../{name}")
        heading = next(s for s in reversed(order[:at]) if not s.startswith("img:"))
        assert heading == f"h2:{section}"


# ---- the round trips ----------------------------------------------------------------------------

async def test_markdown_export_round_trips_every_article_and_image_of_the_run(finished: Finished) -> None:
    expected = await expected_articles(finished)
    assert sorted(expected) == sorted(finished.ids)
    assert sum(len(e.in_article) for e in expected.values()) >= 3 * len(expected)
    archive = await export(finished, "markdown", run_id=finished.run.run_id)
    assert_safe_names(archive)
    manifest = json.loads(archive.read("manifest.json"))
    generated = {image_file(cid, i["id"]) for cid, e in expected.items() for i in e.images
                 if i["status"] == "generated"}
    assert len(generated) == sum(len(e.images) for e in expected.values())  # the run generated them all
    assert {n for n in archive.namelist() if n.startswith("images/")} == generated
    for name in generated:
        cid, iid = map(int, name[7:-4].split("-"))
        assert archive.read(name) == image_path(finished.deps.settings.media_dir, finished.site.id, cid, iid) \
            .read_bytes()
    articles = {n for n in archive.namelist() if n.startswith("articles/")}
    assert len(articles) == len(expected) and set(archive.namelist()) == articles | generated | {"manifest.json"}

    assert manifest["format"] == "markdown" and manifest["run_id"] == finished.run.run_id
    assert manifest["site"] == {"id": finished.site.id, "name": finished.site.name}
    assert manifest["missing_images"] == [] and manifest["skipped_content_ids"] == []
    assert [a["content_id"] for a in manifest["articles"]] == sorted(finished.ids)
    assert {a["file"] for a in manifest["articles"]} == articles
    for entry in manifest["articles"]:
        e = expected[entry["content_id"]]
        fields, body = split_front_matter(archive.read(entry["file"]).decode())
        featured = f"../{image_file(e.content['id'], e.featured['id'])}"
        assert fields == {
            "title": e.content["title"], "meta_title": e.content["meta_title"],
            "meta_description": e.content["meta_description"], "slug": entry["slug"],
            "primary_keyword": e.primary_keyword, "cluster": e.cluster, "keywords": fields["keywords"],
            "status": "review", "created_at": e.content["created_at"].isoformat(), "content_id": e.content["id"],
            "word_count": e.content["word_count"], "featured_image": featured,
            "featured_image_alt": fields["featured_image_alt"]}
        assert sorted(fields["keywords"]) == e.keywords and e.primary_keyword in fields["keywords"]
        assert entry["file"] == f"articles/{entry['slug']}.md" and entry["slug"].startswith(
            safe_slug(e.content["slug"]))
        assert resolve(entry["file"], featured) in archive.namelist()
        assert entry["featured_image"] == resolve(entry["file"], featured)
        assert_images_follow_their_section_in_markdown(body, entry["file"], e)
        assert sorted(entry["images"]) == sorted(image_file(e.content["id"], i["id"]) for i in e.in_article)


async def test_html_export_round_trips_with_standalone_documents_and_an_index(finished: Finished) -> None:
    expected = await expected_articles(finished)
    archive = await export(finished, "html")
    assert_safe_names(archive)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "html" and manifest["run_id"] is None
    files = [a["file"] for a in manifest["articles"]]
    assert all(f.endswith(".html") for f in files) and len(set(files)) == len(expected)
    index = archive.read("index.html").decode()
    assert [s for s in re.findall(r'href="([^"]+)"', index)] == files
    for entry in manifest["articles"]:
        e = expected[entry["content_id"]]
        document = archive.read(entry["file"]).decode()
        assert document.startswith("<!doctype html>\n")
        assert re.search(r"<title>(.*?)</title>", document)[1] == html.escape(e.content["meta_title"])
        assert f'<meta name="description" content="{html.escape(e.content["meta_description"])}">' \
            in document
        assert_images_follow_their_section_in_html(document, entry["file"], e)
        for reference in re.findall(r'src="([^"]+)"', document):
            assert resolve(entry["file"], reference) in archive.namelist()
        # the article's own HTML is all there, figures aside
        assert re.sub(r"\n?<figure .*?</figure>", "", document.split("<article>\n", 1)[1].split("</article>")[0]) \
            == e.content["html"]


async def test_export_writes_into_a_given_file_even_an_unseekable_one(finished: Finished) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += b
            return len(b)

    ids = finished.ids[:2]
    for out in (io.BytesIO(), Pipe()):
        async with finished.deps.sessions() as session:
            result = await export_articles(session, finished.deps.settings.media_dir, finished.site.id, ids,
                                           "markdown", out=out)
        assert result.file is out and result.articles == 2
        data = bytes(out.data) if isinstance(out, Pipe) else out.getvalue()
        assert len(data) == result.size
        assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
        out.close()


async def test_selections_are_checked(finished: Finished, make_site) -> None:
    async with finished.deps.sessions() as session:
        media = finished.deps.settings.media_dir
        with pytest.raises(ValueError, match="unknown export format 'pdf'"):
            await export_articles(session, media, finished.site.id, finished.ids, "pdf")
        with pytest.raises(ValueError, match="nothing selected"):
            await export_articles(session, media, finished.site.id, [], "html")
        with pytest.raises(ValueError, match="unknown content status 'approvd'"):
            await export_articles(session, media, finished.site.id, finished.ids, "html", statuses=["approvd"])
        with pytest.raises(NothingToExport, match="with status published"):
            await export_articles(session, media, finished.site.id, finished.ids, "html", statuses=["published"])
        other = await make_site(keywords=0)
        with pytest.raises(NothingToExport):  # another site's content is never exported
            await export_articles(session, media, other.id, finished.ids, "markdown")
        result = await export_articles(session, media, finished.site.id, [*finished.ids[:1], 2**40, -3, 0],
                                       "markdown")
        assert [a["content_id"] for a in result.manifest["articles"]] == finished.ids[:1]
        assert result.manifest["skipped_content_ids"] == [2**40, -3, 0]
        result.file.close()


# ---- the route ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
async def api(settings, sessions) -> AsyncIterator[httpx.AsyncClient]:
    """The export router on an app of its own (the API's app adds it beside the others)."""
    app = FastAPI()
    app.include_router(export_routes.router)
    app.state.sessions = sessions
    app.state.settings = settings
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield http


async def test_the_route_downloads_a_runs_articles_as_a_zip(api: httpx.AsyncClient, finished: Finished) -> None:
    for fmt, suffix in (("markdown", ".md"), ("html", ".html")):
        answer = await api.get(f"{BASE}/export/", params={"site_id": finished.site.id, "run_id": finished.run.run_id,
                                                          "format": fmt}, headers=finished.key)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip"
        assert answer.headers["content-disposition"] == \
            f'attachment; filename="{finished.site.name}-{finished.run.run_id}-{fmt}.zip"'
        assert int(answer.headers["content-length"]) == len(answer.content)
        archive = zipfile.ZipFile(io.BytesIO(answer.content))
        manifest = json.loads(archive.read("manifest.json"))
        assert [a["content_id"] for a in manifest["articles"]] == sorted(finished.ids)
        assert all(a["file"].endswith(suffix) for a in manifest["articles"])

    two = finished.ids[:2]
    answer = await api.get(f"{BASE}/export/?site_id={finished.site.id}&ids={two[0]},{two[1]}&ids={two[0]}",
                           headers=finished.key)
    assert answer.status_code == 200, answer.text
    assert 'filename="' + finished.site.name + '-selection-markdown.zip"' in answer.headers["content-disposition"]
    assert [a["content_id"] for a in json.loads(zipfile.ZipFile(io.BytesIO(answer.content)).read("manifest.json"))
            ["articles"]] == sorted(two)
    # neither: the site's content in review
    answer = await api.get(f"{BASE}/export/", params={"site_id": finished.site.id, "format": "html"},
                           headers=finished.key)
    assert answer.status_code == 200 and "-review-html.zip" in answer.headers["content-disposition"]
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(answer.content)).read("manifest.json"))
    assert manifest["statuses"] == ["review"] and len(manifest["articles"]) == len(finished.ids)


async def test_the_route_answers_404_for_another_accounts_site_or_run(api: httpx.AsyncClient, finished: Finished,
                                                                      sessions) -> None:
    async with sessions() as session, session.begin():
        account = await create_account(session, f"export-{uuid.uuid4().hex[:8]}", 0)
        own_site = await create_site(session, account, "own-site")
        key = {"X-API-Key": await create_api_key(session, account.id)}
    params = {"site_id": finished.site.id, "run_id": finished.run.run_id}
    answer = await api.get(f"{BASE}/export/", params=params, headers=key)
    assert answer.status_code == 404 and answer.json() == {"detail": f"site {finished.site.id} not found"}
    answer = await api.get(f"{BASE}/export/", params={**params, "site_id": own_site.id}, headers=key)
    assert answer.status_code == 404 and answer.json() == {"detail": f"run {finished.run.run_id} not found"}
    answer = await api.get(f"{BASE}/export/", params={"site_id": own_site.id, "ids": finished.ids[0]}, headers=key)
    assert answer.status_code == 404 and "none of the 1 selected" in answer.json()["detail"]
    answer = await api.get(f"{BASE}/export/", params={"site_id": own_site.id}, headers=key)
    assert answer.status_code == 404 and answer.json() == {
        "detail": f"site {own_site.id} has no content with status review"}
    answer = await api.get(f"{BASE}/export/", params={**params, "status": "published"}, headers=finished.key)
    assert answer.status_code == 404 and "with status published" in answer.json()["detail"]
    assert (await api.get(f"{BASE}/export/", params=params)).status_code == 401


async def test_the_route_refuses_bad_selections_with_422(api: httpx.AsyncClient, finished: Finished) -> None:
    site = {"site_id": finished.site.id}
    bad = [({}, ["query", "site_id"]), ({**site, "run_id": "r", "ids": "1"}, ["query", "ids"]),
           ({**site, "ids": ""}, ["query", "ids"]), ({**site, "ids": "1,x"}, ["query", "ids", 1]),
           ({**site, "ids": "0"}, ["query", "ids", 0]), ({**site, "ids": str(2**31)}, ["query", "ids", 0]),
           ({**site, "ids": ",".join(map(str, range(1, 1002)))}, ["query", "ids"]),
           ({**site, "format": "pdf"}, ["query", "format"]), ({**site, "status": "approvd"}, ["query", "status", 0]),
           ({**site, "status": ""}, ["query", "status"]), ({**site, "run_id": "../x"}, ["query", "run_id"]),
           ({"site_id": 0}, ["query", "site_id"])]
    for params, loc in bad:
        answer = await api.get(f"{BASE}/export/", params=params, headers=finished.key)
        assert answer.status_code == 422, (params, answer.text)
        assert loc in [error["loc"] for error in answer.json()["detail"]], (params, answer.json())


# ---- edited content (these change the run's articles: keep them last) ------------------------------

async def test_hostile_and_repeated_slugs_a_missing_png_and_an_edited_body(finished: Finished, tmp_path: Path
                                                                           ) -> None:
    expected = await expected_articles(finished)
    a, b, c, *rest = sorted(expected)
    async with finished.deps.sessions() as session, session.begin():
        await session.execute(update(Content).where(Content.id == a).values(slug="../../etc/passwd"))
        pending = expected[a].in_article[0]  # as if stage 6 had not got to it
        await session.execute(update(Image).where(Image.id == pending["id"]).values(status="pending"))
        await session.execute(update(Content).where(Content.id.in_([b, c])).values(slug="Same slug"))
        # an editor renamed the heading of an image's section, in both forms
        lost = expected[b].in_article[0]
        edited_html = expected[b].content["html"].replace(f"<h2>{html.escape(lost['section'])}</h2>",
                                                          "<h2>Renamed by an editor</h2>")
        assert edited_html != expected[b].content["html"]
        await session.execute(update(Content).where(Content.id == b).values(
            html=edited_html, markdown=expected[b].content["markdown"].replace(
                f"## {lost['section']}\n", "## Renamed by an editor\n")))
    gone = expected[c].in_article[-1]
    png = image_path(finished.deps.settings.media_dir, finished.site.id, c, gone["id"])
    shutil.move(png, tmp_path / "aside.png")
    try:
        for fmt, suffix in (("markdown", "md"), ("html", "html")):
            archive = await export(finished, fmt, ids=[a, b, c, *rest])
            assert_safe_names(archive)
            manifest = json.loads(archive.read("manifest.json"))
            by_id = {entry["content_id"]: entry for entry in manifest["articles"]}
            assert by_id[a]["file"] == f"articles/etc-passwd.{suffix}" and by_id[a]["source_slug"] == "../../etc/passwd"
            assert (by_id[b]["file"], by_id[c]["file"]) == (f"articles/same-slug.{suffix}",
                                                            f"articles/same-slug-2.{suffix}")
            assert manifest["missing_images"] == [
                {"content_id": a, "image_id": pending["id"], "kind": "in_article", "position": pending["position"],
                 "section": pending["section"], "reason": "not generated"},
                {"content_id": c, "image_id": gone["id"], "kind": "in_article", "position": gone["position"],
                 "section": gone["section"], "reason": "file missing"}]
            assert image_file(a, pending["id"]) not in archive.namelist()
            assert f"{a}-{pending['id']}.png" not in archive.read(by_id[a]["file"]).decode()
            assert image_file(c, gone["id"]) not in archive.namelist()
            text = archive.read(by_id[c]["file"]).decode()
            assert f"{c}-{gone['id']}.png" not in text
            assert len(re.findall(rf"\.\./images/{c}-\d+\.png", text)) == len(expected[c].images) - 1
            # the image of the renamed section is still there, after the first paragraph
            text = archive.read(by_id[b]["file"]).decode()
            assert f"../images/{b}-{lost['id']}.png" in text
            if fmt == "markdown":
                fields, body = split_front_matter(text)
                assert fields["slug"] == "same-slug"
                first_paragraph_end = body.index("\n\n", body.index("\n\n") + 2)
                assert body.index(f"../images/{b}-{lost['id']}.png") < body.index("## ")
                assert body.index(f"../images/{b}-{lost['id']}.png") > first_paragraph_end
            else:
                order = sequence(text)
                at = order.index(f"img:../images/{b}-{lost['id']}.png")
                assert [s for s in order[:at] if not s.startswith("img:")] == ["h1:" + expected[b].content["title"],
                                                                               "p"]
    finally:
        shutil.move(tmp_path / "aside.png", png)
