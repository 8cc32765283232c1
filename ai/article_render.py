"""An article as the pipeline stores it: blocks rendered to Markdown and HTML, its slug, meta fields and word count.

Both providers use these: the offline writer builds `Block`s and renders them, the OpenAI provider
derives HTML and the word count from the model's Markdown and fits its meta fields to their limits.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019-][A-Za-z0-9]+)*")


def count_words(text: str) -> int:
    """Words as a reader counts them (markdown symbols excluded)."""
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class Block:
    """One rendered element of an article, kept neutral so HTML and markdown agree."""

    kind: str  # "h1", "h2", "h3", "p" or "ul"
    text: str = ""
    items: tuple[str, ...] = ()


_MD_INLINE = re.compile(r"[\\`*_\[\]<~]|&(?=#?\w+;)")  # emphasis, code, links, raw HTML, entities
_MD_BLOCK_START = re.compile(r"^([#>+=-])|^(\d{1,9})([.)])(?=\s|$)")  # heading, quote, list, rule, ordered list


def _escape_block_start(match: re.Match[str]) -> str:
    return "\\" + match[1] if match[1] else f"{match[2]}\\{match[3]}"


def markdown_text(text: str, heading: bool = False) -> str:
    """Plain text as Markdown that renders as exactly that text, on one line.

    Keywords come from users and titles and outlines from a model, and sentences are built from them,
    so "**bold** [x](javascript:alert(1)) <script>" must not become bold, a link or raw HTML in the
    article's Markdown, as it does not in its HTML (html.escape). Only what Markdown would read is
    escaped, so the raw text stays readable: "&" only where it starts an entity, and the start of a
    paragraph or list item ("1.", "- ", "#") only there. A heading's text is read inline only, but a
    trailing "#" would close it, so there every "#" is escaped. Whitespace is collapsed: a newline
    would end the block.
    """
    escaped = _MD_INLINE.sub(lambda m: "\\" + m[0], " ".join(text.split()))
    if heading:
        return escaped.replace("#", "\\#")
    return _MD_BLOCK_START.sub(_escape_block_start, escaped, count=1)


def render_markdown(blocks: list[Block]) -> str:
    """Markdown with ATX headings and dash lists; a block's text is plain text, escaped as such."""
    prefix = {"h1": "# ", "h2": "## ", "h3": "### "}
    parts = ["\n".join(f"- {markdown_text(item)}" for item in b.items) if b.kind == "ul"
             else markdown_text(b.text) if b.kind == "p"
             else prefix[b.kind] + markdown_text(b.text, heading=True) for b in blocks]
    return "\n\n".join(parts) + "\n"


def render_html(blocks: list[Block]) -> str:
    """Escaped, well-formed HTML fragment (h1/h2/h3/p/ul)."""
    parts = []
    for b in blocks:
        if b.kind == "ul":
            items = "".join(f"<li>{html.escape(item)}</li>" for item in b.items)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
    return "\n".join(parts) + "\n"


def slugify(text: str) -> str:
    """Lowercase ASCII words joined by hyphens, cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > 80:
        slug = slug[:81].rsplit("-", 1)[0]
    return slug or "article"


_DANGLING = frozenset("a an and the of to for in on with vs or by from at".split())


def clip(text: str, limit: int) -> str:
    """Shorten to `limit` characters at a word boundary, never ending on a dangling word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    words = text[: limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:-").split()
    while len(words) > 1 and words[-1].lower() in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(" ,;:-")


def meta_title(title: str) -> str:
    """<= 60 characters: the title, its part before a colon, or a clean cut."""
    head = title.split(":")[0].strip()
    if len(title) > 60 and 20 <= len(head) <= 60:
        return head
    return clip(title, 60)


def meta_description(description: str, fallback: str) -> str:
    """<= 160 characters, ending like a sentence."""
    text = " ".join((description or fallback).split())
    if len(text) <= 160:
        return text
    return clip(text, 156) + "..."
