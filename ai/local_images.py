"""Offline image prompts and abstract illustrations.

Prompts are descriptive sentences built from the article's own H2 sections, so they would
also suit a real image model. Images are seeded by the prompt: a gradient background and
translucent shapes in a palette derived from it, with a short caption of the prompt's words.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ai.base import ArticleIn, ImagePromptOut, InvalidAIOutput
from ai.local_text import display_lower, keyword_subject, seeded, sentence_subject

_STYLES = ("flat vector illustration", "soft watercolour illustration", "isometric 3D illustration",
           "minimal line-art illustration", "layered paper-cut illustration", "bold geometric poster illustration")
_DETAILS = ("with clean shapes and generous negative space", "with warm natural light and subtle textures",
            "with gentle depth of field and a calm mood", "with crisp outlines and a friendly, modern feel",
            "with soft shadows and an inviting, everyday atmosphere", "with a clear focal point and tidy composition")
_PALETTES = ("teal and coral", "warm earth-tone", "muted pastel", "deep blue and gold", "forest green",
             "sunset orange and violet")
_GENERIC_SECTIONS = frozenset({"frequently asked questions", "conclusion"})
_CAPTION_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")


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
    for position, index in enumerate(_spread(3 + rng.randrange(3), len(body)), start=1):
        section = body[index]
        text = _prompt(rng, sentence_subject(section), topic)
        prompts.append(ImagePromptOut(kind="in_article", position=position, prompt=text, section=section))
    return prompts


def _palette(rng: random.Random) -> list[tuple[int, int, int]]:
    """Five harmonious colours: a base hue, its neighbours and its complement."""
    base = rng.random()
    colours = []
    for shift in (0.0, 0.07, -0.07, 0.5, 0.43):
        saturation, value = rng.uniform(0.35, 0.75), rng.uniform(0.55, 0.95)
        r, g, b = colorsys.hsv_to_rgb((base + shift) % 1.0, saturation, value)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _gradient(width: int, height: int, start: tuple[int, ...], end: tuple[int, ...], angle: float) -> Image.Image:
    """A linear gradient at `angle` radians, broadcast from one row and one column."""
    xs = np.arange(width, dtype=np.float32) * np.float32(np.cos(angle) / max(width, 1))
    ys = np.arange(height, dtype=np.float32) * np.float32(np.sin(angle) / max(height, 1))
    ramp = ys[:, None] + xs[None, :]
    ramp -= ramp.min()
    ramp /= max(float(ramp.max()), 1e-6)
    first = np.asarray(start, np.float32)
    pixels = first + ramp[..., None] * (np.asarray(end, np.float32) - first)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _shapes(draw: ImageDraw.ImageDraw, rng: random.Random, palette: list[tuple[int, int, int]],
            width: int, height: int) -> None:
    """Translucent circles, rounded bars and triangles scattered over the canvas."""
    scale = min(width, height)
    for _ in range(rng.randint(7, 12)):
        colour = (*rng.choice(palette[1:]), rng.randint(80, 170))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.08, 0.4) * scale
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse((x - size, y - size, x + size, y + size), fill=colour)
        elif kind == 1:
            draw.rounded_rectangle((x - size, y - size / 3, x + size, y + size / 3), radius=size / 6, fill=colour)
        else:
            draw.polygon([(x, y - size), (x + size, y + size * 0.8), (x - size, y + size * 0.8)], fill=colour)


def _caption(prompt: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, max_width: float) -> str:
    """The prompt's subject (what follows "of", when there is one) cut to fit on one line."""
    subject = re.search(r"\bof (.+?)(?: for an article\b|[,.;]|$)", prompt)
    words = _CAPTION_WORD.findall(subject.group(1) if subject else prompt)
    if words and words[0].lower() in ("a", "an", "the"):
        words = words[1:]
    caption = ""
    for word in words[:8]:
        candidate = f"{caption} {word}".strip()
        if font.getlength(candidate) > max_width:
            break
        caption = candidate
    return caption[:1].upper() + caption[1:]


def render_png(prompt: str, width: int, height: int) -> bytes:
    """A deterministic abstract illustration for `prompt`, encoded as PNG."""
    if width <= 0 or height <= 0:
        raise InvalidAIOutput(f"cannot render a {width}x{height} image", retryable=False)
    rng = random.Random(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big"))
    palette = _palette(rng)
    image = _gradient(width, height, palette[0], palette[3], rng.uniform(0, np.pi)).convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    _shapes(draw, rng, palette, width, height)
    font = ImageFont.load_default(size=max(10, height // 16))
    band = max(14, height // 8)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0, 120))
    text = _caption(prompt, font, width * 0.92)
    draw.text((width * 0.04, height - band / 2), text, font=font, fill=(255, 255, 255, 235), anchor="lm")
    buffer = io.BytesIO()
    Image.alpha_composite(image, overlay).convert("RGB").save(buffer, "PNG", compress_level=3)
    return buffer.getvalue()
