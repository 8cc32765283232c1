"""Where an article's images go (shared.article_html), and the export's names and front matter (shared.export)."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser

import pytest
import yaml
from markdown_it import MarkdownIt

from ai.base import ArticleIn, IdeaIn, OutlineSection
from ai.local import LocalProvider
from shared.article_html import (
    ALT_MAX,
    PlacedImage,
    alt_text,
    featured_image,
    markdown_heading_text,
    place_featured,
    place_images,
    place_images_markdown,
    section_key,
)
from shared.export import front_matter, safe_slug, yaml_string
from shared.models import CONTENT_STATUSES

MARKDOWN = MarkdownIt("commonmark")  # raw HTML on: a prompt that got through as markup would show here
HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def image(id: int, section: str | None, position: int | None = None, kind: str = "in_article",
          prompt: str | None = None, width: int | None = 160, height: int | None = 90) -> PlacedImage:
    return PlacedImage(id=id, kind=kind, position=id if position is None else position,
                       prompt=prompt if prompt is not None else f"Picture {id} of something.", section=section,
                       width=width, height=height)


def src(placed: PlacedImage) -> str:
    return f"../images/7-{placed.id}.png"


class Elements(HTMLParser):
    """The start tags of an HTML text with their attributes, and the text of each h2/h3, in order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


class Sequence(HTMLParser):
    """Headings as `h2:<text>`, images as `img:<src>`, paragraphs as `p`, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[str] = []
        self.heading: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3"):
            self.heading = f"{tag}:"
        elif tag == "img":
            self.items.append(f"img:{dict(attrs)['src']}")
        elif tag == "p":
            self.items.append("p")

    def handle_data(self, data: str) -> None:
        if self.heading is not None:
            self.heading += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3") and self.heading is not None:
            self.items.append(self.heading)
            self.heading = None


def sequence(text: str) -> list[str]:
    return Sequence(text).items


ARTICLE = """<h1>Budget travel</h1>
<p>Intro paragraph.</p>
<h2>Costs &amp; Fees</h2>
<p>About costs.</p>
<h2>Packing light</h2>
<h3>The bag</h3>
<p>About bags.</p>
"""


# ---- HTML ---------------------------------------------------------------------------------------

def test_in_article_images_follow_their_section_heading_in_position_order() -> None:
    images = [image(3, "Costs & Fees", position=2), image(2, "Costs & Fees", position=1), image(4, "The bag")]
    placed = place_images(ARTICLE, images, src)
    assert sequence(placed) == ["h1:Budget travel", "p", "h2:Costs & Fees", "img:../images/7-2.png",
                                "img:../images/7-3.png", "p", "h2:Packing light", "h3:The bag",
                                "img:../images/7-4.png", "p"]
    assert placed.replace(re.search(r"\n<figure.*?</figure>\n<figure.*?</figure>", placed, re.S)[0], "", 1) \
        .replace(re.search(r"\n<figure.*?</figure>", placed.split("<h3>")[1], re.S)[0], "", 1) == ARTICLE
    figure = re.search(r"<figure[^>]*>.*?</figure>", placed, re.S)[0]
    assert figure == ('<figure class="wp-block-image"><img src="../images/7-2.png" alt="Picture 2 of something" '
                      'width="160" height="90" loading="lazy"/><figcaption>Picture 2 of something</figcaption>'
                      '</figure>')


def test_section_match_ignores_case_whitespace_and_entities_then_punctuation() -> None:
    images = [image(1, "  costs   &  FEES "), image(2, "packing LIGHT"), image(3, "**The** bag!")]
    assert sequence(place_images(ARTICLE, images, src)) == [
        "h1:Budget travel", "p", "h2:Costs & Fees", "img:../images/7-1.png", "p", "h2:Packing light",
        "img:../images/7-2.png", "h3:The bag", "img:../images/7-3.png", "p"]
    # an exact match wins over a loose one further up
    text = "<h2>Tips, tricks</h2><p>a</p><h2>Tips tricks</h2><p>b</p>"
    assert sequence(place_images(text, [image(1, "tips tricks")], src)) == [
        "h2:Tips, tricks", "p", "h2:Tips tricks", "img:../images/7-1.png", "p"]


def test_edited_headings_with_attributes_and_markup_still_match() -> None:
    edited = ('<h1 class="t">T</h1>\n<p class="lead">Lead <em>in</em>.</p>\n'
              '<h2 id="a" data-x=">">Costs &amp; <strong>Fees</strong></h2 >\n<div><h3>Nested&nbsp;one</h3></div>\n')
    placed = place_images(edited, [image(1, "Costs & Fees"), image(2, "Nested\u00a0one")], src)
    assert sequence(placed) == ["h1:T", "p", "h2:Costs & Fees", "img:../images/7-1.png", "h3:Nested\u00a0one",
                                "img:../images/7-2.png"]
    assert '</h2 >\n<figure class="wp-block-image"><img src="../images/7-1.png"' in placed


def test_an_image_whose_heading_is_gone_goes_after_the_first_paragraph_or_at_the_end() -> None:
    images = [image(1, "Removed section"), image(2, None), image(3, "Costs & Fees"), image(4, "")]
    assert sequence(place_images(ARTICLE, images, src)) == [
        "h1:Budget travel", "p", "img:../images/7-1.png", "img:../images/7-2.png", "img:../images/7-4.png",
        "h2:Costs & Fees", "img:../images/7-3.png", "p", "h2:Packing light", "h3:The bag", "p"]
    for text in ("<h2>Only headings</h2>", "", "plain text, no markup", "<p>never closed"):
        placed = place_images(text, images[:2], src)
        assert placed.startswith(text) and sequence(placed)[-2:] == ["img:../images/7-1.png", "img:../images/7-2.png"]


def test_featured_images_and_images_without_a_source_are_left_out() -> None:
    images = [image(1, None, position=0, kind="featured"), image(2, "Costs & Fees"), image(3, "Packing light")]
    placed = place_images(ARTICLE, images, lambda i: None if i.id == 3 else src(i))
    assert [s for s in sequence(placed) if s.startswith("img:")] == ["img:../images/7-2.png"]
    assert place_images(ARTICLE, images, lambda i: None) == ARTICLE
    assert featured_image(images) == images[0] and featured_image(images[1:]) is None
    with_featured = place_featured(ARTICLE, images[0], "../images/7-1.png")
    assert sequence(with_featured)[:2] == ["h1:Budget travel", "img:../images/7-1.png"]
    assert sequence(place_featured("<p>x</p>", images[0], "f.png"))[0] == "img:f.png"
    assert place_featured(ARTICLE, None, "f.png") == place_featured(ARTICLE, images[0], None) == ARTICLE


def test_a_hostile_prompt_section_and_source_stay_text() -> None:
    hostile = image(1, "Costs & Fees", prompt=HOSTILE + ". Second sentence.")
    placed = place_images(ARTICLE, [hostile], lambda i: 'x.png" onload="alert(3)')
    [(_, attrs)] = [(tag, attrs) for tag, attrs in Elements(placed).tags if tag == "img"]
    assert attrs == {"src": 'x.png" onload="alert(3)', "alt": HOSTILE, "width": "160", "height": "90",
                     "loading": "lazy"}
    assert [tag for tag, _ in Elements(placed).tags] == ["h1", "p", "h2", "figure", "img", "figcaption", "p", "h2",
                                                         "h3", "p"]
    assert "<script" not in placed and "Second sentence" not in placed


def test_alt_text_is_the_prompts_first_sentence_cut_short() -> None:
    assert alt_text(image(1, None, prompt="A red bike. On a hill!")) == "A red bike"
    long = ("A flat vector illustration of budget airline tickets for an article about cheap flights, with clean "
            "shapes and generous negative space, in a teal and coral colour palette.")
    assert alt_text(image(1, None, prompt=long)) == ("A flat vector illustration of budget airline tickets for an "
                                                     "article about cheap flights")  # cut at its clause
    unbroken = long.replace(",", "")
    assert alt_text(image(1, None, prompt=unbroken)) == unbroken[:ALT_MAX].rsplit(" ", 1)[0]  # at a word
    words = "word " * 60
    cut = alt_text(image(1, None, prompt=words))
    assert len(cut) <= ALT_MAX and cut.endswith("word") and words.startswith(cut)
    assert len(alt_text(image(1, None, prompt="x" * 300))) == ALT_MAX
    assert alt_text(image(1, "Costs", prompt="  \n ")) == "Costs"
    assert alt_text(image(1, None, prompt="")) == "Illustration"
    assert alt_text(image(1, None, prompt="line\nbreak\u2028and\x00null")) == "line break and null"


def test_the_offline_writers_articles_get_every_image_after_its_heading() -> None:
    """Real articles and prompts of the offline provider, with headings that need escaping in both forms."""
    provider = LocalProvider()
    outline = (OutlineSection("Costs & fees: <what> *really* counts", ("C# and 1. steps",)),
               OutlineSection("## Packing \\ light [fast]", ("Bags",)), OutlineSection("Tips", ()))
    article = asyncio.run(provider.generate_content(IdeaIn(1, "Budget travel", "guide", ("budget travel",), outline,
                                                           "", "budget travel")))
    prompts = asyncio.run(provider.generate_image_prompts(ArticleIn(1, article.title, article.markdown,
                                                                    article.sections, ("budget travel",))))
    images = [PlacedImage(id=n, kind=p.kind, position=p.position, prompt=p.prompt, section=p.section, width=10,
                          height=10) for n, p in enumerate(prompts, start=1)]
    in_article = [i for i in images if i.kind == "in_article"]
    assert len(in_article) >= 3 and {i.section for i in in_article} <= set(article.sections)

    placed = sequence(place_images(article.html, images, src))
    for item in in_article:
        at = placed.index(f"img:{src(item)}")
        heading = next(s for s in reversed(placed[:at]) if not s.startswith("img:"))
        assert heading == f"h2:{item.section}"

    rendered = MARKDOWN.render(place_images_markdown(article.markdown, images, src))
    order = sequence(rendered)
    for item in in_article:
        at = order.index(f"img:{src(item)}")
        heading = next(s for s in reversed(order[:at]) if s != "p" and not s.startswith("img:"))
        assert heading == f"h2:{item.section}"
    # the Markdown renders exactly the article's blocks plus one paragraph per image
    without_images = [s for n, s in enumerate(order) if not s.startswith("img:")
                      and not (s == "p" and n + 1 < len(order) and order[n + 1].startswith("img:"))]
    assert without_images == sequence(MARKDOWN.render(article.markdown))
    assert sum(s.startswith("img:") for s in order) == len(in_article)


# ---- Markdown -----------------------------------------------------------------------------------

MD = """# Budget travel

Intro paragraph
on two lines.

## Costs & Fees

About costs.

```
## Packing light
```

Packing light
-------------

### C\\# and \\*more\\* ###
Text right under it.
"""


def test_markdown_images_follow_their_section_heading() -> None:
    images = [image(1, "costs & fees"), image(2, "Costs & Fees"), image(3, "Packing light"), image(4, "C# and *more*"),
              image(5, None, position=0, kind="featured")]
    placed = place_images_markdown(MD, images, src)
    assert placed == """# Budget travel

Intro paragraph
on two lines.

## Costs & Fees

![Picture 1 of something](../images/7-1.png)

![Picture 2 of something](../images/7-2.png)

About costs.

```
## Packing light
```

Packing light
-------------

![Picture 3 of something](../images/7-3.png)

### C\\# and \\*more\\* ###

![Picture 4 of something](../images/7-4.png)

Text right under it.
"""
    assert markdown_heading_text("C\\# and \\*more\\*") == "C# and *more*"
    assert section_key(" C#  AND *more* ") == section_key("c# and *MORE*")


def test_markdown_image_without_its_heading_goes_after_the_first_paragraph_or_at_the_end() -> None:
    lost = [image(1, "Gone"), image(2, None)]
    assert place_images_markdown(MD, lost, src).startswith(
        "# Budget travel\n\nIntro paragraph\non two lines.\n\n![Picture 1 of something](../images/7-1.png)\n\n"
        "![Picture 2 of something](../images/7-2.png)\n\n## Costs & Fees\n")
    assert place_images_markdown("# Only a title\n", lost[:1], src) == \
        "# Only a title\n\n![Picture 1 of something](../images/7-1.png)\n"
    assert place_images_markdown("text, no newline", lost[:1], src) == \
        "text, no newline\n\n![Picture 1 of something](../images/7-1.png)\n"
    assert place_images_markdown("Intro\n## Next\nbody", lost[:1], src) == \
        "Intro\n\n![Picture 1 of something](../images/7-1.png)\n\n## Next\nbody"
    assert place_images_markdown("", lost[:1], src) == "\n\n![Picture 1 of something](../images/7-1.png)\n"


def test_markdown_hostile_prompt_and_path_render_as_one_image() -> None:
    hostile = image(1, "Costs & Fees", prompt="*bold* [link](javascript:x) ![i](y) <script>alert(1)</script> `c`.")
    placed = place_images_markdown(MD, [hostile], lambda i: "../images/a b(1)<x>.png")
    rendered = MARKDOWN.render(placed)
    images = [attrs for tag, attrs in Elements(rendered).tags if tag == "img"]
    assert images == [{"src": "../images/a%20b%281%29%3Cx%3E.png",
                       "alt": "*bold* [link](javascript:x) ![i](y) <script>alert(1)</script> `c`"}]
    assert {tag for tag, _ in Elements(rendered).tags} == {"h1", "h2", "h3", "p", "img", "pre", "code"}


# ---- export names and front matter ---------------------------------------------------------------

@pytest.mark.parametrize("slug, expected", [
    ("../../etc/passwd", "etc-passwd"), ("/abs/path", "abs-path"), ("..", "article-9"), ("", "article-9"),
    ("Crème Brûlée: a guide", "creme-brulee-a-guide"), ("a\\b\x00c", "a-b-c"), ("x" * 200, "x" * 80),
    ("ok-slug", "ok-slug")])
def test_safe_slug_is_a_plain_file_name(slug: str, expected: str) -> None:
    assert safe_slug(slug, fallback="article-9") == expected


def test_yaml_strings_read_back_as_the_same_text() -> None:
    samples = ['plain', 'with "quotes" and \\backslash\\', "colon: hash # dash -", "- leading dash", "yes", "null",
               "123", "", "tab\tnew\nline\r", "\x00\x07\x1b\x7f\x85\x9f", "caf\u00e9 \u2028 \u2029 \ufeff \ufffe",
               "emoji \U0001f600 and \U0010fffd", "'single'", "{flow: [x]}", "&anchor *alias !tag %dir @ `"]
    for sample in samples:
        assert yaml.safe_load(yaml_string(sample)) == sample, sample
    fields = {"title": HOSTILE, "keywords": ["a: b", "- c"], "none": [], "content_id": 7, "featured_image": None,
              "created_at": "2026-01-02T03:04:05+00:00"}
    text = front_matter(fields)
    assert text.startswith("---\n") and text.endswith("\n---\n")
    assert yaml.safe_load(text.strip("-\n")) == fields


def test_export_statuses_are_the_models() -> None:
    assert {"draft", "review", "published"} <= set(CONTENT_STATUSES)
