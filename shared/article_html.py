"""Where an article's images go in its HTML and Markdown: the one rule every consumer of an article shares.

The publish consumer places them with its WordPress media URLs, the export with relative file paths
(`shared.export`), and the dashboard could with its own. An in-article image belongs to a section:
`Image.section` is the text of the H2 it illustrates, so the image goes right after the heading (h2 or
h3) whose text equals it (entities decoded, whitespace collapsed, case-insensitive; failing that, the
same words ignoring punctuation and Markdown emphasis). Several images of one section follow it in
position order. An image whose heading is not found (an editor changed the body) goes after the first
paragraph, or at the end: no image is ever dropped for want of its heading.

Nothing of an image's prompt reaches the output raw: the alt text is a short phrase cut from it and
escaped for the attribute (HTML) or the link text (Markdown).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import quote

ALT_MAX = 125


@dataclass(frozen=True)
class PlacedImage:
    """What placing needs of an image (`shared.models.Image` has these columns)."""

    id: int
    kind: str  # 'featured' | 'in_article'
    position: int
    prompt: str
    section: str | None
    width: int | None
    height: int | None


Source = Callable[[PlacedImage], str | None]  # an image's URL or path; None: leave the image out


def featured_image(images: Sequence[PlacedImage]) -> PlacedImage | None:
    """The article's featured image (the first by position when there are several), or None."""
    featured = sorted((i for i in images if i.kind == "featured"), key=lambda i: (i.position, i.id))
    return featured[0] if featured else None


def in_article_images(images: Sequence[PlacedImage]) -> list[PlacedImage]:
    """The in-article images in position order."""
    return sorted((i for i in images if i.kind != "featured"), key=lambda i: (i.position, i.id))


# ---- alt text -------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def alt_text(image: PlacedImage) -> str:
    """A short phrase from the prompt: its first sentence, at most 125 characters, cut at a clause (a
    comma) or else a word boundary; the section (or "Illustration") when the prompt is empty. Plain
    text, not escaped."""
    text = " ".join(_NOT_PRINTABLE.sub(" ", image.prompt).split())
    text = _SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".!? ") if text else ""
    if not text:
        return " ".join((image.section or "").split())[:ALT_MAX] or "Illustration"
    if len(text) <= ALT_MAX:
        return text
    head = text[: ALT_MAX + 1]
    clause = max(head.rfind(", "), head.rfind("; "))
    if clause >= ALT_MAX // 3:
        return head[:clause]
    cut = head.rsplit(" ", 1)[0] if " " in head else text[:ALT_MAX]
    return cut.rstrip(" ,;:-") or text[:ALT_MAX]


# ---- section matching (shared by HTML and Markdown) ------------------------------------------------

def section_key(text: str) -> str:
    """The exact form compared: Unicode NFC, whitespace collapsed, case folded."""
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


_WORDS = re.compile(r"\w+")


def loose_key(text: str) -> str:
    """The fallback form: the words only (punctuation and Markdown emphasis such as `**` ignored)."""
    return " ".join(_WORDS.findall(section_key(text)))


def match_section(section: str | None, headings: Sequence[str]) -> int | None:
    """The index of the first heading whose text equals `section` (exactly, else by its words)."""
    if not section or not section.strip():
        return None
    exact = section_key(section)
    for index, heading in enumerate(headings):
        if section_key(heading) == exact:
            return index
    loose = loose_key(section)
    if loose:
        for index, heading in enumerate(headings):
            if loose_key(heading) == loose:
                return index
    return None


def _placements(images: Sequence[PlacedImage], src: Source, headings: Sequence[str]
                ) -> tuple[dict[int, list[tuple[PlacedImage, str]]], list[tuple[PlacedImage, str]]]:
    """In-article images with a source, by heading index, and those whose heading is not there."""
    by_heading: dict[int, list[tuple[PlacedImage, str]]] = {}
    unplaced: list[tuple[PlacedImage, str]] = []
    for image in in_article_images(images):
        url = src(image)
        if url is None:
            continue
        index = match_section(image.section, headings)
        if index is None:
            unplaced.append((image, url))
        else:
            by_heading.setdefault(index, []).append((image, url))
    return by_heading, unplaced


def _insert(text: str, inserts: dict[int, list[str]]) -> str:
    """`text` with each list of strings inserted at its offset."""
    out, last = [], 0
    for offset in sorted(inserts):
        out += [text[last:offset], *inserts[offset]]
        last = offset
    out.append(text[last:])
    return "".join(out)


# ---- HTML -----------------------------------------------------------------------------------------

def figure_html(image: PlacedImage, url: str) -> str:
    """`<figure class="wp-block-image">` with the image and its caption, every value escaped."""
    alt = html.escape(alt_text(image), quote=True)
    size = "".join(f' {name}="{int(value)}"' for name, value in (("width", image.width), ("height", image.height))
                   if value is not None and value > 0)
    return (f'<figure class="wp-block-image"><img src="{html.escape(url, quote=True)}" alt="{alt}"{size}'
            f' loading="lazy"/><figcaption>{alt}</figcaption></figure>')


class _Outline(HTMLParser):
    """Where the h1/h2/h3 headings and the first paragraph of an HTML fragment end, and their text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.headings: list[tuple[str, int]] = []  # (h2/h3 text, offset just after its closing tag)
        self.h1_end: int | None = None
        self.paragraph_end: int | None = None
        self._open: str | None = None
        self._text: list[str] = []

    def _tag_end(self) -> int:
        line, column = self.getpos()
        start = self.line_starts[line - 1] + column
        close = self.source.find(">", start)
        return len(self.source) if close < 0 else close + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3"):
            self._open, self._text = tag, []  # an unclosed heading before it is forgotten

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            end = self._tag_end()
            if tag == "h1":
                if self.h1_end is None:
                    self.h1_end = end
            else:
                self.headings.append(("".join(self._text), end))
            self._open = None
        elif tag == "p" and self.paragraph_end is None:
            self.paragraph_end = self._tag_end()


def _outline(fragment: str) -> _Outline:
    parser = _Outline(fragment)
    parser.feed(fragment)
    parser.close()
    return parser


def place_images(html_text: str, images: Sequence[PlacedImage], src: Source) -> str:
    """The HTML with each in-article image (not 'featured', and only those `src` gives a URL for) as a
    `<figure>` right after its section's heading, else after the first paragraph, else at the end."""
    outline = _outline(html_text)
    by_heading, unplaced = _placements(images, src, [text for text, _ in outline.headings])
    inserts: dict[int, list[str]] = {}
    for index, placed in sorted(by_heading.items()):
        offset = outline.headings[index][1]
        inserts.setdefault(offset, []).extend("\n" + figure_html(image, url) for image, url in placed)
    if unplaced:
        offset = outline.paragraph_end if outline.paragraph_end is not None else len(html_text)
        lead = "" if offset == 0 or html_text[:offset].endswith("\n") else "\n"
        figures = [figure_html(image, url) for image, url in unplaced]
        inserts.setdefault(offset, []).append(lead + "\n".join(figures) + ("\n" if offset == len(html_text) else ""))
    return _insert(html_text, inserts)


def place_featured(html_text: str, image: PlacedImage | None, url: str | None) -> str:
    """The HTML with the featured image as a `<figure>` after its h1 (at the start when it has none)."""
    if image is None or url is None:
        return html_text
    offset = _outline(html_text).h1_end
    figure = figure_html(image, url)
    if offset is None:
        return figure + "\n" + html_text
    return html_text[:offset] + "\n" + figure + html_text[offset:]


# ---- Markdown -------------------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_H2 = re.compile(r"^ {0,3}-+[ \t]*$")
_SETEXT_H1 = re.compile(r"^ {0,3}=+[ \t]*$")
_NOT_PARAGRAPH = re.compile(r"^ {0,3}(?:[-*+][ \t]|\d{1,9}[.)][ \t]|>|\||<)")
_MD_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
_MD_ALT_SPECIAL = re.compile(r"[\\`*_\[\]<>!&#|~]")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_URL_SAFE = "/:@$&'*+,;=?#%-._~"


def markdown_heading_text(raw: str) -> str:
    """A Markdown heading's text with its backslash escapes undone (`C\\#` is `C#`)."""
    return _MD_ESCAPED.sub(r"\1", raw.strip())


def image_markdown(image: PlacedImage, url: str) -> str:
    """`![alt](url)`: the alt text with Markdown's specials escaped, the URL percent-encoded where
    Markdown would end or misread it (spaces, parentheses, angle brackets)."""
    alt = _MD_ALT_SPECIAL.sub(lambda m: "\\" + m[0], alt_text(image))
    return f"![{alt}]({quote(url, safe=_URL_SAFE)})"


@dataclass
class _MarkdownOutline:
    headings: list[tuple[str, int]]  # (h2/h3 text, index of the line after which images go)
    paragraph_end: int | None  # index of the last line of the first paragraph (or list) block


def _markdown_outline(lines: list[str]) -> _MarkdownOutline:
    outline = _MarkdownOutline([], None)
    fence: str | None = None
    block_start: int | None = None  # first line of the text block being read
    in_paragraph = False  # that block is paragraph text, which a setext underline makes a heading

    def end_block(last: int) -> None:
        nonlocal block_start, in_paragraph
        if block_start is not None and outline.paragraph_end is None and last >= block_start:
            outline.paragraph_end = last
        block_start, in_paragraph = None, False

    for index, raw in enumerate(lines):
        line = raw.rstrip("\r")
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and fence_match[1][0] == fence[0] and len(fence_match[1]) >= len(fence):
                fence = None
            continue
        if fence_match:
            end_block(index - 1)
            fence = fence_match[1]
        elif not line.strip():
            end_block(index - 1)
        elif in_paragraph and (_SETEXT_H2.match(line) or _SETEXT_H1.match(line)):
            if _SETEXT_H2.match(line):
                outline.headings.append((markdown_heading_text(lines[index - 1].rstrip("\r")), index))
            if block_start == index - 1:  # the block was this heading's text only
                block_start = None
            end_block(index - 2)
        elif atx := _ATX.match(line):
            end_block(index - 1)
            if len(atx[1]) in (2, 3):
                outline.headings.append((markdown_heading_text(atx[2] or ""), index))
        elif _THEMATIC_BREAK.match(line):
            end_block(index - 1)
        else:
            in_paragraph = not _NOT_PARAGRAPH.match(line)
            if block_start is None:
                block_start = index
    end_block(len(lines) - 1)
    return outline


def place_images_markdown(markdown: str, images: Sequence[PlacedImage], src: Source) -> str:
    """The Markdown counterpart of `place_images`: each in-article image as `![alt](url)` in a paragraph
    of its own right after its section's heading (ATX `##`/`###` or a setext `---` heading; never inside
    a fenced code block), else after the first paragraph, else at the end."""
    lines = markdown.split("\n")
    outline = _markdown_outline(lines)
    by_heading, unplaced = _placements(images, src, [text for text, _ in outline.headings])
    after: dict[int, list[str]] = {}
    for index, placed in by_heading.items():
        after.setdefault(outline.headings[index][1], []).extend(image_markdown(i, url) for i, url in placed)
    if unplaced:
        last = outline.paragraph_end
        if last is None:
            last = len(lines) - 1
            while last > 0 and not lines[last].strip():
                last -= 1
        after.setdefault(last, []).extend(image_markdown(i, url) for i, url in unplaced)
    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(line)
        if index in after:
            for image_line in after[index]:
                out += ["", image_line]
            if index + 1 < len(lines) and lines[index + 1].strip():
                out.append("")
            elif index + 1 == len(lines):
                out.append("")
    return "\n".join(out)
