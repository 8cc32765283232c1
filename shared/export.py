"""Articles exported as a zip: Markdown with YAML front matter, or standalone HTML documents.

    articles/<slug>.md | articles/<slug>.html   one file per article
    images/<content_id>-<image_id>.png          every generated image found on disk
    index.html                                  (html only) a page linking every article
    manifest.json                               what is in the zip, and what is not

The caller chooses the content (the API checks the account owns the site first); only the site's
own content is exported, optionally only in some statuses. Images go into the text where
`shared.article_html` puts them for every other reader, as paths relative to the article file
(`../images/...`). Slugs become file names only as [a-z0-9-] (`../../etc/passwd` is
`etc-passwd`), a repeated one gets `-2`, `-3`. An image whose PNG is not on disk (or that was never
generated) is left out of the text and listed in the manifest's `missing_images`: the export does
not fail for it.

The zip is written to a `SpooledTemporaryFile` (in memory up to 16 MB, then on disk) or to a file
the caller gives; articles are read in chunks of `CHUNK`, written by a worker thread (file reads
and compression stay off the event loop), and not kept: a 500-article run never sits in memory.

Front matter is written here, not with PyYAML (installed in the test environment only): every
string is a double-quoted scalar with YAML's escapes, which YAML 1.1 and 1.2 parsers read back.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
import tempfile
import unicodedata
import zipfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.article_html import (
    PlacedImage,
    Source,
    alt_text,
    featured_image,
    place_featured,
    place_images,
    place_images_markdown,
)
from shared.media import image_path
from shared.models import CONTENT_STATUSES, AutomationRun, Cluster, Content, ContentIdea, Image, Keyword, Site, Task

Format = Literal["markdown", "html"]
FORMATS: tuple[Format, ...] = ("markdown", "html")
CHUNK = 100  # articles read and written per step
SPOOL_MAX_BYTES = 16 * 1024 * 1024
_ID_CHUNK = 5000  # ids per IN (...) when matching a selection
_INT4_MAX = 2**31 - 1




class NothingToExport(LookupError):
    """None of the selected content exists on the site (in the statuses asked for)."""


@dataclass
class ExportResult:
    """The zip (`file`, at its start when the export created it; the caller closes it) and its size."""

    file: IO[bytes]
    size: int
    manifest: dict[str, Any]

    @property
    def articles(self) -> int:
        return len(self.manifest["articles"])


# ---- selections -----------------------------------------------------------------------------------

def run_content_ids(run: AutomationRun) -> list[int]:
    """The content a run left for review: the ids stage 7 stored (empty before stage 7 ran)."""
    result = run.stage_7_result or {}
    ids = result.get("content_ids") or []
    return [int(i) for i in ids if isinstance(i, int) and not isinstance(i, bool)]


async def site_content_ids(session: AsyncSession, site_id: int, statuses: Collection[str]) -> list[int]:
    """Every content id of the site in one of `statuses`, in id order."""
    return list((await session.scalars(select(Content.id).where(
        Content.site_id == site_id, Content.status.in_(list(statuses))).order_by(Content.id))).all())


def check_statuses(statuses: Collection[str] | None) -> list[str] | None:
    """`statuses` as a list, or a ValueError naming an unknown one."""
    if statuses is None:
        return None
    unknown = sorted(set(statuses) - set(CONTENT_STATUSES))
    if unknown:
        raise ValueError(f"unknown content status {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(CONTENT_STATUSES)})")
    return list(dict.fromkeys(statuses))


async def _matching_ids(session: AsyncSession, site_id: int, ids: Sequence[int],
                        statuses: list[str] | None) -> list[int]:
    matched: list[int] = []
    for start in range(0, len(ids), _ID_CHUNK):
        query = select(Content.id).where(Content.site_id == site_id, Content.id.in_(ids[start:start + _ID_CHUNK]))
        if statuses is not None:
            query = query.where(Content.status.in_(statuses))
        matched += (await session.scalars(query)).all()
    return sorted(matched)


# ---- reading articles -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Image:
    placed: PlacedImage
    status: str


@dataclass(frozen=True)
class _Article:
    id: int
    title: str
    meta_title: str
    meta_description: str
    slug: str
    html: str
    markdown: str
    status: str
    word_count: int
    created_at: datetime
    primary_keyword: str | None
    cluster: str | None
    keywords: list[str]
    images: list[_Image] = field(default_factory=list)


async def _load(session: AsyncSession, ids: list[int]) -> list[_Article]:
    """The articles `ids` (columns only: nothing stays in the session's identity map)."""
    rows = (await session.execute(
        select(Content.id, Content.title, Content.meta_title, Content.meta_description, Content.slug, Content.html,
               Content.markdown, Content.status, Content.word_count, Content.created_at,
               ContentIdea.primary_keyword, ContentIdea.cluster_id, Cluster.name)
        .outerjoin(Task, Task.id == Content.task_id).outerjoin(ContentIdea, ContentIdea.id == Task.idea_id)
        .outerjoin(Cluster, Cluster.id == ContentIdea.cluster_id)
        .where(Content.id.in_(ids)).order_by(Content.id))).all()
    images: dict[int, list[_Image]] = {}
    for r in (await session.execute(
            select(Image.id, Image.content_id, Image.kind, Image.position, Image.prompt, Image.section, Image.status,
                   Image.width, Image.height)
            .where(Image.content_id.in_(ids)).order_by(Image.content_id, Image.position, Image.id))).all():
        images.setdefault(r.content_id, []).append(_Image(PlacedImage(
            id=r.id, kind=r.kind, position=r.position, prompt=r.prompt, section=r.section, width=r.width,
            height=r.height), r.status))
    cluster_ids = sorted({r.cluster_id for r in rows if r.cluster_id is not None})
    keywords: dict[int, list[str]] = {}
    if cluster_ids:
        for row in (await session.execute(
                select(Keyword.cluster_id, Keyword.keyword)
                .where(Keyword.cluster_id.in_(cluster_ids), Keyword.disabled.is_(False))
                .order_by(Keyword.cluster_id, Keyword.volume.desc(), Keyword.keyword))).all():
            keywords.setdefault(int(row.cluster_id or 0), []).append(row.keyword)
    return [_Article(id=r.id, title=r.title, meta_title=r.meta_title, meta_description=r.meta_description,
                     slug=r.slug, html=r.html, markdown=r.markdown, status=r.status, word_count=r.word_count,
                     created_at=r.created_at, primary_keyword=r.primary_keyword, cluster=r.name,
                     keywords=keywords.get(r.cluster_id, []) if r.cluster_id is not None else [],
                     images=images.get(r.id, []))
            for r in rows]


# ---- names --------------------------------------------------------------------------------------

def safe_slug(text: str, fallback: str = "article") -> str:
    """[a-z0-9-] only, at most 80 characters: never a path (`../../etc/passwd` is `etc-passwd`)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > 80:
        slug = slug[:80].rstrip("-")
    return slug or fallback


def image_name(content_id: int, image_id: int) -> str:
    """An image's path inside the zip (database ids only)."""
    return f"images/{int(content_id)}-{int(image_id)}.png"


# ---- YAML front matter --------------------------------------------------------------------------

# what YAML allows unescaped in a double-quoted scalar (PyYAML's printable set, minus the line breaks
# U+0085, U+2028 and U+2029 that a parser folds, and minus the quote and backslash)
_YAML_PLAIN = re.compile(r"[ !#-\[\]-~\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_YAML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0"}


def yaml_string(text: str) -> str:
    """A YAML double-quoted scalar that reads back as exactly `text` (JSON-like, with YAML's escapes)."""
    out = []
    for char in text:
        if _YAML_PLAIN.fullmatch(char):
            out.append(char)
        elif char in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[char])
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _yaml_scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return yaml_string(str(value))


def front_matter(fields: dict[str, object]) -> str:
    """`---`, one `key: value` line per field (a list as a block sequence), `---`."""
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, list | tuple):
            lines.append(f"{key}: []" if not value else f"{key}:")
            lines += [f"  - {_yaml_scalar(item)}" for item in value]
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return "\n".join([*lines, "---"]) + "\n"


# ---- HTML documents -----------------------------------------------------------------------------

_STYLE = ("body{font-family:system-ui,sans-serif;line-height:1.6;max-width:46rem;margin:2rem auto;padding:0 1rem}"
          "img{max-width:100%;height:auto}figure{margin:1.5rem 0}figcaption{font-size:.85rem;color:#555}")
# the documents need no script: one that an edited body carries does not run when the file is opened
_CSP = "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'"


def _document(title: str, description: str | None, body: str) -> str:
    meta = f'<meta name="description" content="{html.escape(description, quote=True)}">\n' if description else ""
    return (f'<!doctype html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f"<title>{html.escape(title)}</title>\n{meta}<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"{body}</body>\n</html>\n")


# ---- the zip ------------------------------------------------------------------------------------

class _ZipWriter:
    """Writes articles, their images, the index and the manifest into one zip (synchronous: it runs in
    a worker thread, one call at a time)."""

    def __init__(self, target: IO[bytes] | io.RawIOBase, fmt: Format, media_dir: Path, site_id: int,
                 exported_at: datetime) -> None:
        self.zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED)
        self.fmt = fmt
        self.media_dir = media_dir
        self.site_id = site_id
        self.stamp = exported_at.timetuple()[:6]
        self.slugs: set[str] = set()
        self.entries: list[dict[str, Any]] = []
        self.missing: list[dict[str, Any]] = []

    def _text(self, name: str, text: str) -> None:
        info = zipfile.ZipInfo(name, date_time=self.stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self.zip.writestr(info, text.encode("utf-8"))

    def _image(self, content_id: int, image: _Image) -> str | None:
        """Copy the image's PNG into the zip; its name there, or None (noted as missing) if there is none."""
        reason = None
        if image.status != "generated":
            reason = "not generated"
        else:
            path = image_path(self.media_dir, self.site_id, content_id, image.placed.id)
            name = image_name(content_id, image.placed.id)
            try:
                data = path.read_bytes()  # one image at a time; a read that fails leaves no partial entry
            except FileNotFoundError:
                reason = "file missing"
            except OSError as exc:
                reason = f"file unreadable ({exc.strerror or type(exc).__name__})"
            else:
                info = zipfile.ZipInfo(name, date_time=self.stamp)
                info.compress_type = zipfile.ZIP_STORED  # PNG is compressed already
                info.external_attr = 0o644 << 16
                self.zip.writestr(info, data)
                return name
        self.missing.append({"content_id": content_id, "image_id": image.placed.id, "kind": image.placed.kind,
                             "position": image.placed.position, "section": image.placed.section, "reason": reason})
        return None

    def _slug(self, article: _Article) -> str:
        base = safe_slug(article.slug, fallback=f"article-{article.id}")
        slug, n = base, 1
        while slug in self.slugs:
            n += 1
            slug = f"{base}-{n}"
        self.slugs.add(slug)
        return slug

    def add(self, articles: list[_Article]) -> None:
        for article in articles:
            files = {image.placed.id: self._image(article.id, image) for image in article.images}
            placed = [image.placed for image in article.images]

            def src(image: PlacedImage, files: dict[int, str | None] = files) -> str | None:
                name = files.get(image.id)
                return f"../{name}" if name else None

            featured = featured_image(placed)
            featured_src = src(featured) if featured else None
            slug = self._slug(article)
            if self.fmt == "markdown":
                name = f"articles/{slug}.md"
                self._text(name, self._markdown(article, slug, placed, src, featured_src))
            else:
                name = f"articles/{slug}.html"
                body = place_featured(place_images(article.html, placed, src), featured, featured_src)
                self._text(name, _document(article.meta_title or article.title, article.meta_description,
                                           f"<article>\n{body}</article>\n"
                                           '<p><a href="../index.html">All articles</a></p>\n'))
            self.entries.append({
                "content_id": article.id, "title": article.title, "status": article.status, "slug": slug,
                "source_slug": article.slug, "file": name,
                "featured_image": files.get(featured.id) if featured else None,
                "images": [files[i.id] for i in placed if files.get(i.id) and i.kind != "featured"]})

    def _markdown(self, article: _Article, slug: str, placed: list[PlacedImage], src: Source,
                  featured_src: str | None) -> str:
        fields: dict[str, object] = {
            "title": article.title, "meta_title": article.meta_title, "meta_description": article.meta_description,
            "slug": slug, "primary_keyword": article.primary_keyword, "cluster": article.cluster,
            "keywords": article.keywords, "status": article.status, "created_at": article.created_at.isoformat(),
            "content_id": article.id, "word_count": article.word_count, "featured_image": featured_src}
        featured = featured_image(placed)
        if featured is not None and featured_src is not None:
            fields["featured_image_alt"] = alt_text(featured)
        body = place_images_markdown(article.markdown, placed, src)
        return front_matter(fields) + "\n" + body + ("" if body.endswith("\n") else "\n")

    def finish(self, manifest: dict[str, Any], site_name: str) -> None:
        if self.fmt == "html":
            items = "".join(
                f'<li><a href="{html.escape(e["file"], quote=True)}">{html.escape(e["title"])}</a></li>\n'
                for e in self.entries)
            self._text("index.html", _document(f"{site_name}: {len(self.entries)} articles", None,
                                               f"<h1>{html.escape(site_name)}</h1>\n<ul>\n{items}</ul>\n"))
        self._text("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        self.zip.close()

    def abort(self) -> None:
        try:
            self.zip.close()
        except (OSError, ValueError):
            pass


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


async def export_articles(session: AsyncSession, media_dir: Path, site_id: int, content_ids: Sequence[int],
                          fmt: str, *, statuses: Collection[str] | None = None, run_id: str | None = None,
                          out: IO[bytes] | None = None) -> ExportResult:
    """Export the site's content among `content_ids` (only in `statuses`, when given) as a zip in format
    `fmt` ('markdown' or 'html'); into `out` when given, else into a spooled temporary file.

    ValueError: an empty selection, an unknown format or status. NothingToExport: none of the ids is the
    site's content (in those statuses). The site is not checked against an account: the caller does.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    wanted = check_statuses(statuses)
    requested = list(dict.fromkeys(int(i) for i in content_ids))
    if not requested:
        raise ValueError("nothing selected: give at least one content id")
    site = await session.scalar(select(Site).where(Site.id == site_id))
    if site is None:
        raise NothingToExport(f"site {site_id} not found")
    ids = await _matching_ids(session, site.id, [i for i in requested if 0 < i <= _INT4_MAX], wanted)
    if not ids:
        where = f" with status {' or '.join(wanted)}" if wanted else ""
        raise NothingToExport(f"none of the {len(requested)} selected content items is on site {site_id}{where}")
    exported_at = datetime.now(UTC).replace(microsecond=0)
    target: IO[bytes] = out if out is not None else tempfile.SpooledTemporaryFile(
        max_size=SPOOL_MAX_BYTES, mode="w+b", suffix=".zip")
    seekable = target.seekable()
    start = target.tell() if seekable else 0
    counter = None if seekable else _Counter(target)
    writer = _ZipWriter(counter if counter is not None else target, fmt, Path(media_dir), site.id, exported_at)
    try:
        for chunk in _chunks(ids, CHUNK):
            articles = await _load(session, chunk)
            await asyncio.to_thread(writer.add, articles)
        exported = {e["content_id"] for e in writer.entries}
        manifest: dict[str, Any] = {
            "format": fmt, "exported_at": exported_at.isoformat(), "site": {"id": site.id, "name": site.name},
            "run_id": run_id, "statuses": wanted, "requested": len(requested), "exported": len(writer.entries),
            "skipped_content_ids": [i for i in requested if i not in exported],
            "articles": writer.entries, "missing_images": writer.missing}
        await asyncio.to_thread(writer.finish, manifest, site.name)
    except BaseException:
        writer.abort()
        if out is None:
            target.close()
        raise
    size = counter.count if counter is not None else target.tell() - start
    if out is None:
        target.seek(0)
    return ExportResult(file=target, size=size, manifest=manifest)


class _Counter(io.RawIOBase):
    """An unseekable output (a pipe, a socket) that counts what is written to it; zipfile then writes
    the sizes after each member, as it does for any stream."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.raw.write(data)
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self.raw.flush()
