"""Keyword and idea text reaches an article's Markdown as literal text, never as markup (issue 13)."""

from __future__ import annotations

import asyncio
import html
import re

from markdown_it import MarkdownIt

from ai.article_render import Block, render_markdown
from ai.base import IdeaIn, OutlineSection
from ai.local import LocalProvider

HOSTILE = "**bold** [x](javascript:alert(1)) <script>"
MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])  # raw HTML on, as many renderers have it
TAG = re.compile(r"<(/?)(\w+)")


def rendered_text(markdown: str) -> str:
    """What a reader sees: the rendered HTML without its tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", MARKDOWN.render(markdown)))


def test_hostile_keyword_text_renders_as_literal_text() -> None:
    idea = IdeaIn(1, f"Guide to {HOSTILE}", "guide", (HOSTILE, "c# ~~gone~~ &amp; `code` _em_"),
                  (OutlineSection(f"## {HOSTILE}", ("1. Step", "- item", "> quote", "C #")),), "", HOSTILE)
    article = asyncio.run(LocalProvider().generate_content(idea))
    tags = {name for _, name in TAG.findall(MARKDOWN.render(article.markdown))}
    assert tags <= {"h1", "h2", "h3", "p", "ul", "li"}, tags  # no strong, em, a, code, del, script, blockquote, ol
    text = rendered_text(article.markdown)
    assert f"Guide to {HOSTILE}" in text and f"## {HOSTILE}" in text
    assert "c# ~~gone~~ &amp; `code` _em_" in text.lower()
    assert all(heading in text for heading in ("1. Step", "- item", "> quote", "C #"))


def test_every_block_renders_to_exactly_its_text() -> None:
    samples = ["*a* _b_ `c` [d](e) <f> & &lt; \\ # ~g~ | h", "1) one", "+ plus", "- dash", "=== rule", "---",
               "> quote", "    indented", "line\nbreak", "# C #", "10. ten", "![img](x.png)"]
    for kind in ("h1", "h2", "h3", "p"):
        for sample in samples:
            html_out = MARKDOWN.render(render_markdown([Block(kind, sample)]))
            assert html_out.startswith(f"<{kind}>"), (kind, sample, html_out)
            assert rendered_text(render_markdown([Block(kind, sample)])).strip() == " ".join(sample.split())
    listed = MARKDOWN.render(render_markdown([Block("ul", items=tuple(samples))]))
    assert listed.count("<li>") == len(samples) and "<ol>" not in listed and "<ul>\n<li>" in listed
