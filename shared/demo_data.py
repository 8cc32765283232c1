"""Realistic demo keywords, grouped by topic, for seeding sites and measuring clustering.

The topic labels double as ground truth: tests feed the keywords to a provider and
score its clusters against these topics, so every keyword belongs to exactly one topic.
The keywords themselves are data, in `shared/data/demo_topics.json` (topic -> keywords).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from itertools import zip_longest
from typing import Annotated

from pydantic import Field, StringConstraints, TypeAdapter

Keyword = Annotated[str, StringConstraints(min_length=1)]
_TOPICS = TypeAdapter(dict[str, Annotated[list[Keyword], Field(min_length=1)]])


def _load_topics() -> dict[str, list[str]]:
    """The topics file, parsed with the stdlib and checked: every topic a non-empty list of keywords."""
    text = (resources.files("shared") / "data" / "demo_topics.json").read_text(encoding="utf-8")
    return _TOPICS.validate_python(json.loads(text))


DEMO_TOPICS: dict[str, list[str]] = _load_topics()  # in the file's order, which demo_keywords interleaves

# Google-Ads-style volume buckets, so demo volumes look like what keyword tools report.
_VOLUME_BUCKETS: tuple[int, ...] = (
    10, 20, 30, 40, 50, 70, 90, 110, 140, 170, 210, 260, 320, 390, 480, 590, 720,
    880, 1000, 1300, 1600, 1900, 2400, 2900, 3600, 4400, 5400, 6600, 8100, 9900,
    12100, 14800, 18100, 20000,
)


def demo_keywords(count: int | None = None) -> list[tuple[str, str]]:
    """(keyword, topic) pairs, round-robin across topics so any prefix spans many topics."""
    columns = zip_longest(*(([(kw, topic) for kw in kws]) for topic, kws in DEMO_TOPICS.items()))
    pairs = [pair for row in columns for pair in row if pair is not None]
    return pairs if count is None else pairs[:count]


def keyword_volume(keyword: str) -> int:
    """Deterministic plausible monthly volume: short head terms search more than long tails."""
    digest = hashlib.sha256(keyword.strip().lower().encode()).digest()
    jitter = int.from_bytes(digest[:4], "big") / 2**32  # 0..1
    words = max(1, len(keyword.split()))
    top = len(_VOLUME_BUCKETS) - 1
    index = round(top - (words - 1) * 3.2 - jitter * 12)
    return _VOLUME_BUCKETS[min(top, max(0, index))]
