"""Phrase helpers of the offline writer: templates filled, keywords and headings bent into phrases.

Shared by the idea writer (`local_ideas`), the article writer (`local_articles`) and the image
prompts (`local_images`). Choices are seeded from the content they are about (never from Python's
salted hash()), so the same input always gives the same text. The word lists they rely on are data
(`ai/data/english.json`, `ai/data/keywords.json`).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from functools import lru_cache

from ai.local_case import capitalise, cased
from ai.local_templates import ALTERNATIVES, SLOT, english, keyword_lists

__all__ = ["capitalise", "cased", "display_lower", "fill", "gerund", "gerund_phrase", "join_phrases", "keyword_subject",
           "plural", "seeded", "sentence_subject", "slots_of", "subject_of"]


def seeded(*parts: object) -> random.Random:
    """A Random seeded from a stable digest of `parts` (never Python's salted hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@lru_cache(maxsize=8192)
def slots_of(template: str) -> frozenset[str]:
    """The slot names a template uses, lowercase."""
    return frozenset(name.lower() for name in SLOT.findall(template))


def fill(template: str, rng: random.Random, slots: dict[str, str]) -> str:
    """Expand `[a|b]` alternatives, then `{slot}`s: a slot given under its exact name is used as is
    (headings pass title-cased values as `{S}`), otherwise `{Slot}` capitalises the lowercase value."""
    text = ALTERNATIVES.sub(lambda m: rng.choice(m.group(1).split("|")), template)

    def slot(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in slots:
            return slots[key]
        value = slots[key.lower()]
        return capitalise(value) if key[0].isupper() else value

    return capitalise(re.sub(r"\s+", " ", SLOT.sub(slot, text)).strip())


def gerund_phrase(words: list[str]) -> str:
    """"potty train a puppy" -> "potty training a puppy": the -ing goes on the verb."""
    lists = keyword_lists()
    if len(words) > 1 and words[0] in lists.verb_prefixes and not words[1].endswith("ing"):
        return " ".join([words[0], gerund(words[1]), *words[2:]])
    if words and words[0].endswith("ing") and len(words[0]) > 5:
        return " ".join(words)
    return " ".join([gerund(words[0]), *words[1:]]) if words else ""


def gerund(verb: str) -> str:
    """The -ing form of a verb, good enough for the verbs that start "how to" searches."""
    doubled = english().doubled_gerunds
    if verb in doubled:
        return doubled[verb]
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    return verb + "ing"


@lru_cache(maxsize=65536)
def plural(noun_phrase: str) -> str:
    """The phrase with its last word in the plural ("mechanical keyboard" -> "mechanical keyboards");
    unchanged when it already is, is a mass noun, a name or has digits."""
    words = noun_phrase.split()
    if not words:
        return noun_phrase
    last = words[-1]
    lists = keyword_lists()
    if (last.endswith("s") and not last.endswith(("ss", "us"))) or last in lists.mass_nouns or \
            last in lists.attribute_heads or last.endswith(("tion", "sion", "ment", "ness", "ity")) or \
            any(c.isdigit() for c in last) or not last.isalpha() or last.endswith("ing") or \
            cased(last) != last or last in lists.places:
        return noun_phrase
    if last.endswith(("ss", "x", "ch", "sh", "us")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith("fe"):
        last = last[:-2] + "ves"
    else:
        last += "s"
    return " ".join([*words[:-1], last])


def _lower_word(word: str) -> str:
    """Lower-case a title-cased word but keep acronyms and brand casing (EV, iPhone)."""
    parts = word.split("-")
    return "-".join(p.lower() if p[1:] == p[1:].lower() and p != "I" else p for p in parts)


def display_lower(text: str) -> str:
    """A heading as it would read mid-sentence."""
    return cased(" ".join(_lower_word(w) for w in text.split()))


def subject_of(heading: str) -> str:
    """Turn a heading into a phrase that can sit inside a sentence ("How to Tune a Guitar"
    -> "tuning a guitar", "What Is Net Metering?" -> "net metering")."""
    text = re.sub(r"^(?:step|tip|part|day)\s+\d+\s*[:.)-]\s*", "", heading.strip(), flags=re.I)
    text = re.sub(r"^\d+[.)]\s*", "", text)
    head, _, tail = text.partition(":")
    text = (head if len(head.split()) > 2 or not tail.strip() else tail).strip().rstrip("?!.")
    words = display_lower(text).split()
    if len(words) > 2 and words[0] == "how" and words[1] == "to":
        return gerund_phrase(words[2:])
    if len(words) > 2 and words[0] in english().question_starts and words[1] in ("is", "are"):
        return " ".join(words[2:])
    return " ".join(words) or display_lower(heading)


def sentence_subject(heading: str) -> str:
    """Like subject_of, but imperative headings become gerund phrases
    ("Review and Adjust Regularly" -> "reviewing and adjusting regularly")."""
    words = subject_of(heading).split()
    imperatives = english().imperatives
    if not words or words[0] not in imperatives:
        return " ".join(words)
    return " ".join(gerund(w) if i == 0 or (words[i - 1] == "and" and w in imperatives) else w
                    for i, w in enumerate(words))


def keyword_subject(keyword: str, gerunds: bool = True) -> str | None:
    """A keyword as a phrase for sentences ("how to x" -> gerund unless `gerunds` is False),
    or None for other questions."""
    words = keyword.lower().split()
    if not words:
        return None
    if gerunds and words[:2] == ["how", "to"] and len(words) > 2:
        return cased(gerund_phrase(words[2:]))
    if words[0] in english().question_starts or words[0] == "how":
        return None
    while len(words) > 1 and words[0] in ("best", "top", "the"):
        words = words[1:]
    while len(words) > 1 and words[-1] in ("review", "explained", "guide", "tips", "ideas"):
        words = words[:-1]
    return cased(" ".join(words))


def join_phrases(items: Iterable[str]) -> str:
    """"a, b and c" for prose lists."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
