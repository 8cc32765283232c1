"""The demo keyword set is the ground truth for clustering quality, so it must be clean."""

from __future__ import annotations

import re
from collections import Counter

from shared.demo_data import DEMO_TOPICS, demo_keywords, keyword_volume


def test_topics_are_many_and_well_sized() -> None:
    assert len(DEMO_TOPICS) >= 16
    for topic, keywords in DEMO_TOPICS.items():
        assert 18 <= len(keywords) <= 30, topic


def test_keywords_are_unique_across_topics() -> None:
    counts = Counter(k for keywords in DEMO_TOPICS.values() for k in keywords)
    assert [k for k, n in counts.items() if n > 1] == []


def test_keywords_look_like_real_searches() -> None:
    for keywords in DEMO_TOPICS.values():
        for keyword in keywords:
            assert keyword == keyword.strip().lower()
            assert 1 <= len(keyword.split()) <= 9, keyword
            assert not re.search(r"(?:keyword|topic|item)\s*\d+|#\d", keyword), keyword


def test_demo_keywords_returns_every_pair_with_its_topic() -> None:
    pairs = demo_keywords()
    assert len(pairs) == sum(len(v) for v in DEMO_TOPICS.values())
    assert all(keyword in DEMO_TOPICS[topic] for keyword, topic in pairs)


def test_demo_keywords_interleaves_topics_round_robin() -> None:
    first = demo_keywords(len(DEMO_TOPICS))
    assert [topic for _, topic in first] == list(DEMO_TOPICS)
    assert len({topic for _, topic in demo_keywords(200)}) == len(DEMO_TOPICS)


def test_demo_keywords_count_takes_a_prefix() -> None:
    assert demo_keywords(25) == demo_keywords()[:25]
    assert demo_keywords(0) == []


def test_keyword_volume_is_deterministic_and_plausible() -> None:
    keywords = [k for keywords in DEMO_TOPICS.values() for k in keywords]
    volumes = [keyword_volume(k) for k in keywords]
    assert volumes == [keyword_volume(k) for k in keywords]
    assert all(10 <= v <= 20000 for v in volumes)
    assert len(set(volumes)) >= 15


def test_head_terms_search_more_than_long_tails() -> None:
    keywords = [k for keywords in DEMO_TOPICS.values() for k in keywords]
    short = [keyword_volume(k) for k in keywords if len(k.split()) <= 2]
    long = [keyword_volume(k) for k in keywords if len(k.split()) >= 5]
    assert sum(short) / len(short) > 2 * sum(long) / len(long)
