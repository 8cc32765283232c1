"""Search intents: which keywords one article answers.

Two articles competing for one intent cannibalize each other, so the pipeline writes one idea per
intent: the offline provider groups a cluster's keywords with `intents`, and stage 2 drops an idea
whose primary keyword asks for what an existing idea of the site already covers (`intent_key`),
whatever provider wrote it.
"""

from __future__ import annotations

# Words that do not change what a searcher wants to read ("best espresso grinder" and "espresso grinders
# guide" ask for one article).
FILLER = frozenset({"a", "an", "the", "best", "top", "for", "of", "to", "in", "on", "and", "with", "your", "my",
                    "guide", "tips", "ideas", "review", "reviews", "explained", "2024", "2025", "2026"})


def intent_key(keyword: str) -> frozenset[str]:
    """The words that decide a keyword's intent: lowercase, filler dropped, plurals and -ing folded."""
    words = set()
    for word in keyword.lower().replace("?", " ").split():
        if word in FILLER:
            continue
        for suffix in ("ing", "es", "s"):
            if len(word) > len(suffix) + 3 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        words.add(word)
    return frozenset(words) or frozenset(keyword.lower().split())


def intents(keywords: tuple[str, ...]) -> list[str]:
    """One keyword per distinct intent, in the cluster's order: the first of the keywords that share
    an intent key represents them."""
    chosen: dict[frozenset[str], str] = {}
    for keyword in keywords:
        chosen.setdefault(intent_key(keyword), keyword)
    return list(chosen.values())
