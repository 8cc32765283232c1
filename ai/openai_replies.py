"""The `openai` provider's replies made into the pipeline's values, checked on the way.

A sloppy answer (a keyword left out, too few ideas, markdown without sections, an image that
does not decode) becomes a retryable `InvalidAIOutput` instead of bad rows. Articles come back
as markdown: HTML, sections and the word count are derived here, never trusted from the model.
"""

from __future__ import annotations

import base64
import html
import io
import re
from typing import Literal

from PIL import Image, UnidentifiedImageError

from ai.article_render import clip, count_words, slugify
from ai.base import ArticleOut, ClusterOut, IdeaOut, ImageOut, ImagePromptOut, InvalidAIOutput, OutlineSection
from ai.openai_schemas import ArticleReply, ClusterReply, IdeasReply, PromptsReply

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def checked_clusters(reply: ClusterReply, given: set[int], known: set[int]) -> list[ClusterOut]:
    """Clusters only if every given keyword is assigned exactly once and existing ids are real."""
    assigned = [i for c in reply.clusters for i in c.keyword_ids]
    if sorted(assigned) != sorted(given):
        raise InvalidAIOutput("cluster_keywords did not assign every keyword exactly once")
    if any(c.existing_id is not None and c.existing_id not in known for c in reply.clusters):
        raise InvalidAIOutput("cluster_keywords named an existing cluster that does not exist")
    return [ClusterOut(name=" ".join(c.name.split()), description=c.description.strip(),
                       keyword_ids=tuple(c.keyword_ids), existing_id=c.existing_id) for c in reply.clusters]


def checked_ideas(reply: IdeasReply, taken_titles: frozenset[str], keywords: tuple[str, ...]) -> list[IdeaOut]:
    """Drops taken or repeated titles and ideas whose primary keyword is not one of the cluster's or
    is targeted already (one article per intent), keeps at most 5, and refuses none at all."""
    seen = {t.strip().casefold() for t in taken_titles}
    by_folded = {k.strip().casefold(): k for k in keywords}
    targeted: set[str] = set()
    ideas: list[IdeaOut] = []
    for item in reply.ideas:
        title = " ".join(item.title.split())
        primary = by_folded.get(item.primary_keyword.strip().casefold())
        if title.casefold() in seen or primary is None or primary in targeted:
            continue
        seen.add(title.casefold())
        targeted.add(primary)
        outline = tuple(OutlineSection(h2=s.h2.strip(), h3s=tuple(h.strip() for h in s.h3s if h.strip()))
                        for s in item.outline)
        ideas.append(IdeaOut(title=title, content_type=item.content_type.strip().lower(),
                             target_keywords=tuple(dict.fromkeys([primary, *item.target_keywords])),
                             outline=outline, description=item.description.strip(), primary_keyword=primary))
    if not ideas:
        raise InvalidAIOutput("generate_ideas returned no usable idea (new title, primary keyword of the cluster)")
    return ideas[:5]


def build_article(reply: ArticleReply) -> ArticleOut:
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


def build_prompts(reply: PromptsReply) -> list[ImagePromptOut]:
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


def b64_image(data: str) -> bytes:
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
