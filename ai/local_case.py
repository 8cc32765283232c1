"""Casing for the offline writer: keywords arrive lowercase, titles and sentences must not.

`cased` restores what has a fixed case wherever it appears: acronyms and brands from the names list
(`ai/data/english.json`: "PBT", "iPhone", "Bob's Red Mill"), a word that is a name only beside
another ("abs" is ABS beside "keycaps"), model numbers ("p1s" -> "P1S", "1099-nec" -> "1099-NEC"),
units that are capitals ("48v" -> "48V", "3d" -> "3D") and "I". `title_case` then capitalises a
heading, leaving small words lowercase and names as they are.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from ai.local_templates import english, name_casing

SMALL_WORDS = frozenset("a an and as at but by for from in into nor of on onto or per the to vs via with".split())
_UNIT_CASE = {"v": "V", "w": "W", "wh": "Wh", "kwh": "kWh", "ah": "Ah", "mah": "mAh", "c": "C", "f": "F", "d": "D"}
_EDGE = re.compile(r"^([^\w&]*)(.*?)([^\w&%]*)$")


@cache
def _phrases() -> re.Pattern[str]:
    """Multi-word names, longest first, as one pattern over lowercase text."""
    names = sorted((n.casefold() for n in name_casing().values() if " " in n), key=len, reverse=True)
    return re.compile(r"(?<![\w'&-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w'&-])")


def _model_number(word: str) -> str | None:
    """Casing of a token with digits: "p1s" -> "P1S", "1099-nec" -> "1099-NEC", "48v" -> "48V"; None if
    nothing to change."""
    if not any(c.isdigit() for c in word):
        return None
    parts = word.split("-")
    out = []
    for part in parts:
        unit = re.fullmatch(r"(\d+(?:[.,]\d+)*)([a-z]+)", part)
        if unit:
            suffix = unit.group(2)
            out.append(unit.group(1) + _UNIT_CASE.get(suffix, suffix))
        elif re.fullmatch(r"[a-z]{1,4}\d[a-z\d]*", part) or (len(parts) > 1 and re.fullmatch(r"[a-z]{1,4}", part)):
            out.append(part.upper())
        else:
            out.append(part)
    joined = "-".join(out)
    return joined if joined != word else None


def _word(word: str, context: frozenset[str]) -> str:
    """One token with its fixed casing, if it has one."""
    lead, core, tail = _EDGE.match(word).groups()  # type: ignore[union-attr]
    folded = core.casefold()
    if not folded:
        return word
    names = name_casing()
    if folded in names:
        return lead + names[folded] + tail
    special = english().context_names.get(folded)
    if special is not None and special.near & context:
        return lead + special.cased + tail
    if folded in ("i", "i'm", "i've", "i'd", "i'll"):
        return lead + "I" + core[1:] + tail
    model = _model_number(folded)
    if model is not None:
        return lead + model + tail
    return word


def _spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, cased) of the multi-word names in `text`, not overlapping."""
    names = name_casing()
    return [(m.start(), m.end(), names[m.group()]) for m in _phrases().finditer(text.casefold())]


def _tokens(text: str) -> list[tuple[str, bool]]:
    """The words of `text` cased, each with whether its case is fixed (a name) and must stay; the
    all-lowercase words of a multi-word name ("oven" in "Dutch oven") are not fixed."""
    context = frozenset(re.sub(r"[^\w\s'-]", " ", text.casefold()).split())
    out: list[tuple[str, bool]] = []
    position = 0
    for start, end, name in [*_spans(text), (len(text), len(text), "")]:
        for word in text[position:start].split():
            fixed = _word(word, context)
            out.append((fixed, fixed != word))
        out += [(w, w != w.lower()) for w in name.split()]
        position = end
    return out


@lru_cache(maxsize=65536)
def cased(text: str) -> str:
    """`text` with names, acronyms, model numbers and "I" in their case; everything else untouched."""
    return " ".join(word for word, _ in _tokens(text))


@lru_cache(maxsize=65536)
def title_case(text: str) -> str:
    """Heading case: every word capitalised (hyphenated parts too) except small words inside the
    heading; names and acronyms keep their own case ("PBT vs ABS Keycaps", "Zola vs The Knot Registry")."""
    words = _tokens(text)
    out: list[str] = []
    for index, (word, fixed) in enumerate(words):
        after_break = index == 0 or out[-1].endswith((":", "?", "!", "."))
        lead, core, tail = _EDGE.match(word).groups()  # type: ignore[union-attr]
        if fixed or not core:
            out.append(word)
        elif not after_break and index < len(words) - 1 and core.casefold() in SMALL_WORDS:
            out.append(lead + core.casefold() + tail)
        elif core[:1].isdigit():
            out.append(word)
        else:
            parts = core.split("-")
            out.append(lead + "-".join([parts[0][:1].upper() + parts[0][1:]]
                                       + [p if p in SMALL_WORDS else p[:1].upper() + p[1:] for p in parts[1:]]) + tail)
    return " ".join(out)


def capitalise(text: str) -> str:
    """Upper-case the first letter only, leaving acronyms and names (even "iPhone") alone."""
    if text[1:2].isupper() or text.split(" ", 1)[0] in name_casing().values():
        return text
    return text[:1].upper() + text[1:]
