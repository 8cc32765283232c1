"""Offline image prompts and illustrations that follow them.

Prompts are descriptive sentences built from the article's own H2 sections, so they would also suit
a real image model: a style ("layered paper-cut illustration"), the subject, a detail and a palette
("teal and coral"). The renderer reads those words back: the palette's colour words become the
picture's colours, the style word picks how it is drawn (paper-cut layers with shadows, watercolour
washes, isometric blocks, line art, flat vector shapes, a geometric poster), and the subject is laid
out as a caption in full, wrapped over as many lines as it needs at a size that fits (a caption that
cannot fit whole is left out, never cut mid-phrase). A prompt the renderer does not understand (from
another provider, say) still gets a deterministic picture, seeded by the prompt.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import re
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ai.base import ArticleIn, ImagePromptOut, InvalidAIOutput
from ai.local_text import capitalise, display_lower, keyword_subject, seeded, sentence_subject

_STYLES = ("flat vector illustration", "soft watercolour illustration", "isometric 3D illustration",
           "minimal line-art illustration", "layered paper-cut illustration", "bold geometric poster illustration")
_DETAILS = ("with clean shapes and generous negative space", "with warm natural light and subtle textures",
            "with gentle depth of field and a calm mood", "with crisp outlines and a friendly, modern feel",
            "with soft shadows and an inviting, everyday atmosphere", "with a clear focal point and tidy composition")
_PALETTES = ("teal and coral", "warm earth-tone", "muted pastel", "deep blue and gold", "forest green",
             "sunset orange and violet")
_GENERIC_SECTIONS = frozenset({"frequently asked questions", "conclusion"})

RGB = tuple[int, int, int]
# Colour words a prompt may use, and what they look like.
COLOURS: dict[str, RGB] = {
    "teal": (0, 128, 128), "turquoise": (64, 200, 190), "coral": (255, 127, 80), "gold": (212, 175, 55),
    "golden": (218, 165, 32), "blue": (40, 90, 180), "navy": (20, 40, 90), "green": (60, 140, 70),
    "forest": (34, 85, 50), "olive": (110, 120, 50), "mint": (170, 225, 200), "sage": (150, 170, 130),
    "orange": (240, 130, 40), "violet": (130, 80, 170), "purple": (110, 60, 150), "lavender": (190, 170, 220),
    "pink": (240, 150, 180), "red": (200, 50, 50), "crimson": (170, 20, 50), "yellow": (245, 205, 60),
    "brown": (120, 80, 50), "terracotta": (200, 100, 70), "ochre": (204, 140, 40), "sand": (215, 190, 150),
    "beige": (225, 210, 180), "cream": (245, 235, 210), "grey": (130, 130, 130), "gray": (130, 130, 130),
    "black": (30, 30, 30), "white": (245, 245, 245), "peach": (250, 190, 150), "magenta": (200, 50, 140),
}
# Palette words that name several colours at once.
_FAMILIES: dict[str, tuple[RGB, ...]] = {
    "earth-tone": ((204, 140, 40), (200, 100, 70), (120, 80, 50), (110, 120, 50), (215, 190, 150)),
    "earth": ((204, 140, 40), (200, 100, 70), (120, 80, 50), (110, 120, 50), (215, 190, 150)),
    "pastel": ((250, 200, 210), (190, 225, 210), (205, 195, 235), (250, 235, 180), (185, 215, 240)),
    "sunset": ((245, 120, 50), (235, 80, 90), (250, 180, 70)),
    "monochrome": ((40, 40, 40), (110, 110, 110), (190, 190, 190)),
}
_COLOUR_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


def _prompt(rng: random.Random, subject: str, topic: str) -> str:
    """One descriptive sentence about `subject` within the article's topic."""
    style, detail, palette = rng.choice(_STYLES), rng.choice(_DETAILS), rng.choice(_PALETTES)
    article = "An" if style[0] in "aeiou" else "A"
    return f"{article} {style} of {subject} for an article about {topic}, {detail}, in a {palette} colour palette."


def _spread(count: int, available: int) -> list[int]:
    """`count` distinct indices spread evenly over `available` items."""
    if count >= available:
        return list(range(available))
    return [round(i * (available - 1) / (count - 1)) for i in range(count)] if count > 1 else [available // 2]


def image_prompts(article: ArticleIn) -> list[ImagePromptOut]:
    """A featured prompt from the title, then 3-5 in-article prompts from the body's H2s."""
    rng = seeded("prompts", article.title)
    topic = next((s for s in map(keyword_subject, article.target_keywords) if s), display_lower(article.title))
    featured = _prompt(rng, f'the idea behind "{article.title}"', topic)
    prompts = [ImagePromptOut(kind="featured", position=0, prompt=featured)]
    body = [s for s in article.sections if s.strip().lower() not in _GENERIC_SECTIONS] or list(article.sections)
    body = [s for s in body if not re.search(r"question|bottom line|final thoughts|where to go from here|verdict",
                                             s, re.IGNORECASE)] or body
    for position, index in enumerate(_spread(3 + rng.randrange(3), len(body)), start=1):
        section = body[index]
        text = _prompt(rng, sentence_subject(section), topic)
        prompts.append(ImagePromptOut(kind="in_article", position=position, prompt=text, section=section))
    return prompts


# ---------------------------------------------------------------------------------------------- reading a prompt


@dataclass(frozen=True)
class Look:
    """What a prompt asks the picture to look like."""

    style: str  # paper-cut, watercolour, isometric, line-art, flat, geometric or abstract
    palette: tuple[RGB, ...]  # colours named by the prompt (or seeded ones), darkest first
    named: bool  # whether the prompt named the colours


_STYLE_WORDS = (("paper-cut", r"paper[- ]?cut"), ("watercolour", r"watercolou?r"), ("isometric", r"isometric"),
                ("line-art", r"line[- ]art|line drawing"), ("geometric", r"geometric|poster"),
                ("flat", r"flat|vector"))


def read_prompt(prompt: str) -> Look:
    """The style and palette a prompt names; what it does not name is seeded by the prompt."""
    text = prompt.casefold()
    rng = random.Random(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big"))
    style = next((name for name, pattern in _STYLE_WORDS if re.search(pattern, text)), "abstract")
    colours: list[RGB] = []
    for word in _COLOUR_WORD.findall(text):
        if word in _FAMILIES:
            colours += _FAMILIES[word]
        elif word in COLOURS:
            colours.append(COLOURS[word])
    named = bool(colours)
    if not colours:
        colours = _seeded_palette(rng)
    if "muted" in text or "pastel" in text:
        colours = [_adjust(c, saturation=0.6, value=1.08) for c in colours]
    if re.search(r"\bdeep\b|\bdark\b", text):
        colours = [_adjust(c, value=0.85) for c in colours]
    palette = _expand(list(dict.fromkeys(colours)))
    return Look(style, tuple(sorted(palette, key=_luma)), named)


def _seeded_palette(rng: random.Random) -> list[RGB]:
    """Three harmonious colours: a base hue, a neighbour and the complement."""
    base = rng.random()
    out = []
    for shift in (0.0, 0.08, 0.5):
        r, g, b = colorsys.hsv_to_rgb((base + shift) % 1.0, rng.uniform(0.35, 0.7), rng.uniform(0.55, 0.9))
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def _adjust(colour: RGB, saturation: float = 1.0, value: float = 1.0) -> RGB:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    r, g, b = colorsys.hsv_to_rgb(h, min(1.0, s * saturation), min(1.0, v * value))
    return (round(r * 255), round(g * 255), round(b * 255))


def _expand(colours: list[RGB]) -> list[RGB]:
    """At least five colours: the named ones, then lighter and darker shades of them."""
    out = list(colours)
    index = 0
    while len(out) < 5:
        base = colours[index % len(colours)]
        out.append(_adjust(base, saturation=0.7, value=1.25) if index % 2 == 0 else _adjust(base, value=0.7))
        index += 1
    return out


def _luma(colour: RGB) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


# ---------------------------------------------------------------------------------------------- the caption


@dataclass(frozen=True)
class CaptionLayout:
    """The caption's lines at a font size that fits, or no lines when the subject cannot fit whole."""

    text: str  # the subject the caption shows, in full
    lines: tuple[str, ...]
    size: int

    @property
    def complete(self) -> bool:
        return " ".join(self.lines) == self.text


def caption_text(prompt: str) -> str:
    """The subject of a prompt: a quoted title, else what follows "of" up to "for an article", else the prompt."""
    quoted = re.search(r"[\"\u201c](.+?)[\"\u201d]", prompt)
    if quoted:
        text = quoted.group(1)
    else:
        subject = re.search(r"\bof (.+?)(?: for an article\b|, with\b|, in a\b|[.;]$|$)", prompt)
        text = subject.group(1) if subject else prompt
        text = re.sub(r"^(?:an?|the)\s+", "", text.strip(), flags=re.IGNORECASE)
    return capitalise(" ".join(text.split()).strip(" .,;"))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, width: float) -> list[str] | None:
    """Greedy line breaks within `width`; None if a single word is wider."""
    lines: list[str] = []
    for word in words:
        if font.getlength(word) > width:
            return None
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _balanced(words: list[str], font: ImageFont.FreeTypeFont, width: float) -> list[str] | None:
    """As few lines as `_wrap` needs, but of even lengths (no lone last word)."""
    lines = _wrap(words, font, width)
    if lines is None or len(lines) < 2:
        return lines
    narrow = font.getlength(" ".join(words)) / len(lines)
    while narrow < width:
        tried = _wrap(words, font, narrow)
        if tried is not None and len(tried) <= len(lines):
            return tried
        narrow *= 1.04
    return lines


def caption_layout(prompt: str, width: int, height: int) -> CaptionLayout:
    """The largest font size (from height/15 down to 9 px) at which the whole subject fits in at most
    four lines within 92% of the width and 45% of the height."""
    text = caption_text(prompt)
    words = text.split()
    split = re.split(r"([:?])\s", text, maxsplit=1)
    title, mark, rest = (split[0], split[1], split[2]) if len(split) == 3 else (text, "", "")
    for size in range(max(9, height // 15), 8, -1):
        font = _font(size)
        lines = _balanced(words, font, width * 0.92)
        if mark and rest and max(font.getlength(title + mark), font.getlength(rest)) <= width * 0.92:
            lines = [title + mark, rest]  # a title breaks at its colon or question mark
        if lines is not None and len(lines) <= 4 and len(lines) * size * 1.3 + size <= height * 0.45:
            return CaptionLayout(text, tuple(lines), size)
    return CaptionLayout(text, (), 0)


# ---------------------------------------------------------------------------------------------- drawing


def _gradient(width: int, height: int, start: RGB, end: RGB, angle: float) -> Image.Image:
    """A linear gradient at `angle` radians, broadcast from one row and one column."""
    xs = np.arange(width, dtype=np.float32) * np.float32(np.cos(angle) / max(width, 1))
    ys = np.arange(height, dtype=np.float32) * np.float32(np.sin(angle) / max(height, 1))
    ramp = ys[:, None] + xs[None, :]
    ramp -= ramp.min()
    ramp /= max(float(ramp.max()), 1e-6)
    first = np.asarray(start, np.float32)
    pixels = first + ramp[..., None] * (np.asarray(end, np.float32) - first)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _paper_cut(image: Image.Image, rng: random.Random, palette: tuple[RGB, ...]) -> None:
    """Layered hills of paper, back to front, each casting a soft shadow on the layer behind."""
    width, height = image.size
    layers = rng.randint(4, 6)
    colours = [palette[-1 - (i % len(palette))] for i in range(layers)]  # light at the back, dark at the front
    for index, colour in enumerate(colours):
        base = height * (0.3 + 0.6 * index / layers)
        amplitude = height * rng.uniform(0.04, 0.1)
        phase, waves = rng.uniform(0, 6.3), rng.uniform(1.0, 2.5)
        xs = np.linspace(0, width, 48)
        points = [(float(x), float(base + amplitude * np.sin(phase + waves * 6.28 * x / max(width, 1)))) for x in xs]
        polygon = [*points, (width, height), (0, height)]
        shadow = Image.new("L", image.size, 0)
        ImageDraw.Draw(shadow).polygon([(x, y - 3) for x, y in polygon], fill=110)
        shadow = shadow.filter(ImageFilter.GaussianBlur(max(2, height // 60)))
        image.paste((0, 0, 0), mask=shadow)
        ImageDraw.Draw(image).polygon(polygon, fill=colour)


def _watercolour(image: Image.Image, rng: random.Random, palette: tuple[RGB, ...]) -> None:
    """Soft, translucent washes that bleed into each other on pale paper."""
    width, height = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(10, 14)):
        colour = (*rng.choice(palette[:4]), rng.randint(110, 170))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.08, 0.25) * width, rng.uniform(0.1, 0.3) * height
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
    layer = layer.filter(ImageFilter.GaussianBlur(max(2, min(width, height) // 45)))
    image.paste(Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB"))


def _isometric(image: Image.Image, rng: random.Random, palette: tuple[RGB, ...]) -> None:
    """Isometric blocks: each a top, a left and a right face in three shades of one colour."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    unit = min(width, height) * rng.uniform(0.08, 0.12)
    for _ in range(rng.randint(5, 9)):
        colour = rng.choice(palette[1:])
        x, y = rng.uniform(0.1, 0.9) * width, rng.uniform(0.35, 0.85) * height
        tall = unit * rng.uniform(0.6, 2.0)
        top = [(x, y - tall), (x + unit, y - tall - unit / 2), (x, y - tall - unit), (x - unit, y - tall - unit / 2)]
        left = [(x - unit, y - unit / 2), (x, y), (x, y - tall), (x - unit, y - tall - unit / 2)]
        right = [(x, y), (x + unit, y - unit / 2), (x + unit, y - tall - unit / 2), (x, y - tall)]
        draw.polygon(left, fill=_adjust(colour, value=0.75))
        draw.polygon(right, fill=_adjust(colour, value=0.9))
        draw.polygon(top, fill=_adjust(colour, saturation=0.8, value=1.15))


def _line_art(image: Image.Image, rng: random.Random, palette: tuple[RGB, ...]) -> None:
    """Outlines only, in the palette's darker colours, on a pale ground."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    stroke = max(1, min(width, height) // 90)
    for _ in range(rng.randint(6, 10)):
        colour = rng.choice(palette[:3])
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.06, 0.22) * min(width, height)
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse((x - size, y - size, x + size, y + size), outline=colour, width=stroke)
        elif kind == 1:
            draw.rounded_rectangle((x - size, y - size / 2, x + size, y + size / 2), radius=size / 4, outline=colour,
                                   width=stroke)
        else:
            draw.line([(x - size, y + size), (x, y - size), (x + size, y + size)], fill=colour, width=stroke)


def _shapes(image: Image.Image, rng: random.Random, palette: tuple[RGB, ...], opaque: bool, bold: bool) -> None:
    """Circles, rounded bars and triangles: opaque and sharp for flat or poster styles, translucent otherwise."""
    width, height = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = min(width, height)
    for _ in range(rng.randint(5, 8) if bold else rng.randint(7, 12)):
        colour = (*rng.choice(palette[1:]), 255 if opaque else rng.randint(80, 170))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.15, 0.45 if bold else 0.4) * scale
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse((x - size, y - size, x + size, y + size), fill=colour)
        elif kind == 1:
            draw.rounded_rectangle((x - size, y - size / 3, x + size, y + size / 3), radius=0 if bold else size / 6,
                                   fill=colour)
        else:
            draw.polygon([(x, y - size), (x + size, y + size * 0.8), (x - size, y + size * 0.8)], fill=colour)
    image.paste(Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB"))


def _background(look: Look, width: int, height: int, rng: random.Random) -> Image.Image:
    """Pale paper for watercolour and line art, a flat fill for flat and poster styles, else a gradient."""
    lightest, darkest = look.palette[-1], look.palette[0]
    if look.style in ("watercolour", "line-art"):
        paper = _adjust(lightest, saturation=0.15, value=1.3)
        return Image.new("RGB", (width, height), paper)
    if look.style in ("flat", "geometric"):
        return Image.new("RGB", (width, height), look.palette[len(look.palette) // 2] if look.style == "geometric"
                         else _adjust(lightest, saturation=0.5, value=1.1))
    return _gradient(width, height, lightest, _adjust(darkest, value=1.2), rng.uniform(0, np.pi))


def _draw_caption(image: Image.Image, layout: CaptionLayout) -> None:
    """The caption's lines on a translucent band at the bottom."""
    if not layout.lines:
        return
    width, height = image.size
    line_height = layout.size * 1.3
    band = len(layout.lines) * line_height + layout.size * 0.8
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0, 130))
    font = _font(layout.size)
    top = height - band + layout.size * 0.4
    for number, line in enumerate(layout.lines):
        draw.text((width * 0.04, top + number * line_height), line, font=font, fill=(255, 255, 255, 240))
    image.paste(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"))


def render_png(prompt: str, width: int, height: int) -> bytes:
    """A deterministic illustration for `prompt` in the style and palette it names, encoded as PNG."""
    if width <= 0 or height <= 0:
        raise InvalidAIOutput(f"cannot render a {width}x{height} image", retryable=False)
    rng = random.Random(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big"))
    look = read_prompt(prompt)
    image = _background(look, width, height, rng)
    if look.style == "paper-cut":
        _paper_cut(image, rng, look.palette)
    elif look.style == "watercolour":
        _watercolour(image, rng, look.palette)
    elif look.style == "isometric":
        _isometric(image, rng, look.palette)
    elif look.style == "line-art":
        _line_art(image, rng, look.palette)
    else:
        _shapes(image, rng, look.palette, opaque=look.style in ("flat", "geometric"), bold=look.style == "geometric")
    _draw_caption(image, caption_layout(prompt, width, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=3)
    return buffer.getvalue()
