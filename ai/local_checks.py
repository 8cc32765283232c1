"""What an editor would flag in the offline writer's output, as checks the tests and `bench.writer` share.

These are deliberately independent of how the writer builds its text: patterns over the finished
title or Markdown, not the writer's own classification of keywords (which would only agree with
itself). The idea writer also uses `title_problems` to skip a title template that reads badly.

- `title_problems`: a question or a comparison wrapped in a template ("How to Master How Many Solar
  Panels Do I Need"), doubled phrases ("Checklist for Beginners Checklist for Beginners"), acronyms and
  brands cased wrongly ("PBT vs Abs Keycaps"), a/an mismatches, a stale year, and the like.
- `keyword_density`: occurrences of the primary keyword per 150 words.
- `shared_heading_share`: the share of a site's H2/H3 headings that are word for word those of another cluster.
- `faq_echoes`: an FAQ answer that repeats its question instead of answering it.
- `type_contradiction`: a content type (or outline) the keyword contradicts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from ai.local_templates import english, name_casing

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019.&-][A-Za-z0-9]+)*")
_QUESTION_WORDS = "how|what|why|when|where|which|who|whom|whose"
_AUX = "is|are|was|were|do|does|did|can|could|should|would|will|shall|may|might|must|am"
_SMALL = frozenset("a an and as at but by for from in into nor of on or per the to vs via with".split())
_DANGLING = frozenset("a an the of to for with and or in on at by from vs".split())
_TEMPLATE_NOUNS = frozenset("guide review checklist tip tips plan beginner beginners best ultimate complete "
                            "essential explained compared comparison mistakes ideas".split())
_UNITS = re.compile(r"^\d+(?:[.,/:]\d+)*(?:%|k|kg|g|mg|lb|lbs|oz|mm|cm|m|km|ml|l|ft|in|mph|ppm|gsm|am|pm|st|nd|rd|"
                    r"th|s|x|mg|gal|hz|c|f|min|h|hr|hrs|day|days|v|w|wh|ah|mah|kwh)?$", re.IGNORECASE)
_UNIT_FORMS = {"v": "V", "w": "W", "wh": "Wh", "kwh": "kWh", "ah": "Ah", "mah": "mAh", "d": "D"}

_PATTERNS: dict[str, re.Pattern[str]] = {
    # "How to Master How Many Solar Panels Do I Need", "Understanding Is the Japan Rail Pass Worth It"
    "question inside a template": re.compile(
        rf"(?:^|\b(?:to|of|with|for|about|on|into|from|understanding|mastering|master|approach|explained|"
        rf"reviewed|compared|comparing|versus|behind)\s+)(?<!^)(?:(?:{_QUESTION_WORDS})\s+(?:many|much|long|often|far|"
        rf"{_AUX})\b|(?:{_AUX})\s+(?:the|a|an|my|your|i|you|it|there|we|they|this|that)\b)", re.IGNORECASE),
    "how to ... how": re.compile(r"^how to\b[^:?]*\b(?:how|what|why|which|who)\b", re.IGNORECASE),
    # "How to Get Started with Trail Running Shoes vs Road Running Shoes", "Choosing Between A vs B"
    "comparison inside a template": re.compile(
        r"\b(?:with|to|of|about|between|on|master|mastering|understanding|started)\b[^:?]*\bvs\.?(?:\s|$)",
        re.IGNORECASE),
    "how to + gerund": re.compile(r"^how to (?:(?:potty|crate|leash|house|spot|hand|steam)\s+)?"
                                  r"(?!(?:bring|sing|string|ring|swing|spring|sling|sting|wring)\b)\w+ing\b",
                                  re.IGNORECASE),
    "guide to + verb": re.compile(r"\b(?:guide|introduction|approach|plan|checklist) to (?:learn|make|build|choose|"
                                  r"start|get|use|feed|shape|store|stop|train|teach|tune|read|play|change|clean|fix|"
                                  r"install|buy|grow|brew|find|pick|set|keep|take|do)\b", re.IGNORECASE),
    "double punctuation": re.compile(r"[?:!.,]\s*[?:,](?!\d)|(?<!\d):(?!\d).*(?<!\d):(?!\d)|\?.*\?"),
    "a/an mismatch": re.compile(r"\b(?:a (?=[aeiou](?!ni|se|su|sa|ro|tah)|8|11|18)"
                                r"|an (?=[b-df-hj-np-tv-z](?!o?nest|our|eir|onou)|[0-79]))", re.IGNORECASE),
    "lowercase i": re.compile(r"(?<![\w'])i(?![\w'])"),
}


_WRAPPING = ("question inside a template", "comparison inside a template", "how to ... how")


def _find(title: str, keyword: str) -> tuple[int, int] | None:
    """Where the keyword's words stand in the title (punctuation and case aside), if they do."""
    words = _WORD.findall(keyword.casefold())
    if not words:
        return None
    pattern = r"(?<![\w'])" + r"\W+".join(re.escape(w) for w in words) + r"(?![\w'])"
    match = re.search(pattern, title, flags=re.IGNORECASE)
    return match.span() if match else None


def _key(word: str) -> str:
    """A word folded for comparison: lowercase, plural -s dropped."""
    word = re.sub(r"['\u2019]s$", "", word.casefold()).strip("'\u2019")
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _doubled(words: list[str]) -> bool:
    """A phrase of 2+ words (or a template noun) said twice, except across "vs"/"or"/"and"."""
    keys = [_key(w) for w in words]
    sides = []
    side = 0
    for word in words:
        if word.lower() in ("vs", "vs.", "or", "versus", "and"):
            side += 1
        sides.append(side)
    for n in (2, 3, 4):
        seen: dict[tuple[str, ...], int] = {}
        for i in range(len(keys) - n + 1):
            gram = tuple(keys[i : i + n])
            if all(g in _SMALL for g in gram):
                continue
            if gram in seen and sides[seen[gram]] == sides[i]:
                return True
            seen.setdefault(gram, i)
    counts: dict[str, int] = defaultdict(int)
    for key in keys:
        if key in {_key(t) for t in _TEMPLATE_NOUNS}:
            counts[key] += 1
    return any(c > 1 for c in counts.values())


def _casing_problem(title: str) -> bool:
    """An acronym or brand in the wrong case ("Abs", "Pbt", "P1s", "3d"), or a lowercase word mid-title."""
    names = name_casing()
    words = _WORD.findall(title)
    lowered = " ".join(words).casefold()
    for phrase, cased in names.items():
        if " " in phrase and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", lowered):
            titled = " ".join(w[:1].upper() + w[1:] if w == w.lower() else w for w in cased.split())
            if cased not in title and titled not in title and cased.casefold() in title.casefold():
                return True
    folded_words = {w.casefold() for w in words}
    for word in words:
        context = english().context_names.get(word.casefold())
        if context is not None and context.near & folded_words and word != context.cased:
            return True
    for index, word in enumerate(words):
        folded = word.casefold()
        expected = names.get(folded)
        if expected is not None and " " not in expected and word != expected:
            if not (word == expected.upper() and len(word) > 1):
                return True
            continue
        if word[0].isdigit():
            match = re.fullmatch(r"[\d.,/:]+([A-Za-z]+)", word)
            if match and _UNIT_FORMS.get(match.group(1).lower(), match.group(1)) != match.group(1):
                return True  # 3d, 48v, 500wh
            continue
        if any(c.isdigit() for c in word) and word[:1].isalpha() and expected is None:
            letters = re.sub(r"[^A-Za-z]", "", word)
            if letters != letters.upper() and word.casefold() not in names:
                return True  # P1s, Mk4, Sm7b
        if index > 0 and word[:1].islower() and folded not in _SMALL and not _UNITS.match(word) \
                and expected is None and folded not in english().context_names:
            return True
    return False


def title_problems(title: str, keyword: str = "", year: int | None = None) -> list[str]:
    """Names of the patterns `title` matches; [] for a title an editor would let through."""
    problems = [name for name, pattern in _PATTERNS.items() if name not in _WRAPPING and pattern.search(title)]
    span = _find(title, keyword)
    if span is None:
        problems += [name for name in _WRAPPING if _PATTERNS[name].search(title)]
    else:  # the keyword's own words are not the template's: judge what surrounds them
        start, end = span
        around = title[:start] + "X" + title[end:]
        problems += [name for name in _WRAPPING if _PATTERNS[name].search(around)]
        wrapped = start > 0 and not re.search(r"[:?!.]\s*$", title[:start])
        kw = keyword.casefold().strip()
        if wrapped and re.match(rf"^(?:{_QUESTION_WORDS}|{_AUX})\b", kw):
            problems.append("question inside a template")
        if wrapped and re.search(r"\s(?:vs\.?|versus)\s", f" {kw} "):
            problems.append("comparison inside a template")
        problems = list(dict.fromkeys(problems))
    words = _WORD.findall(title)
    if _doubled(words):
        problems.append("doubled phrase")
    if _casing_problem(title):
        problems.append("casing of an acronym, brand or word")
    if words and words[-1].casefold() in _DANGLING:
        problems.append("ends on a dangling word")
    first = re.split(r"[:?]", title, maxsplit=1)[0]
    if re.match(rf"^(?:{_AUX})\s", first, re.IGNORECASE) or \
            re.match(rf"^(?:{_QUESTION_WORDS})\s+(?:\w+\s+){{0,4}}(?:{_AUX})\s", first, re.IGNORECASE):
        if not title[len(first) :].startswith("?"):
            problems.append("question without a question mark")
    for found in re.findall(r"\b(?:19|20)\d\d\b", title):
        if found not in keyword and (year is None or int(found) != year):
            problems.append("a year the input did not give")
            break
    return problems


# ---------------------------------------------------------------------------------------------- articles


def count_phrase(text: str, phrase: str) -> int:
    """Occurrences of `phrase` in `text`, case-insensitive, on word boundaries."""
    words = phrase.casefold().split()
    if not words:
        return 0
    pattern = r"(?<![\w'])" + r"\W+".join(re.escape(w) for w in words) + r"(?![\w'])"
    return len(re.findall(pattern, text.casefold()))


def keyword_density(markdown: str, keyword: str) -> float:
    """Occurrences of the primary keyword per 150 words of the article (headings included)."""
    words = len(_WORD.findall(markdown))
    return count_phrase(markdown, keyword) * 150 / max(1, words)


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of the ATX headings, Markdown escapes removed."""
    found = []
    for line in markdown.splitlines():
        match = re.match(r"^(#{1,6})\s+(.*)$", line)
        if match:
            found.append((len(match.group(1)), re.sub(r"\\(.)", r"\1", match.group(2)).strip()))
    return found


def _heading_key(text: str) -> str:
    """A heading as compared across articles: numbering ("3.", "Step 2:") and case ignored."""
    text = re.sub(r"^(?:step\s+)?\d+\s*[.):]\s*", "", text.strip(), flags=re.IGNORECASE)
    return " ".join(text.casefold().split())


def shared_heading_share(articles: Iterable[tuple[object, str]]) -> tuple[float, list[str]]:
    """Of all H2/H3 heading occurrences in (cluster, markdown) pairs, the share whose text also heads
    an article of another cluster; and the shared headings, most widespread first."""
    clusters_of: dict[str, set[object]] = defaultdict(set)
    occurrences: list[tuple[str, object]] = []
    for cluster, markdown in articles:
        for level, text in headings(markdown):
            if level in (2, 3):
                key = _heading_key(text)
                clusters_of[key].add(cluster)
                occurrences.append((key, cluster))
    shared = {key for key, clusters in clusters_of.items() if len(clusters) > 1}
    share = sum(1 for key, _ in occurrences if key in shared) / max(1, len(occurrences))
    return share, sorted(shared, key=lambda k: (-len(clusters_of[k]), k))


def faq_pairs(markdown: str) -> list[tuple[str, str]]:
    """(question, answer) of the FAQ section: its H3s and the paragraph under each."""
    pairs: list[tuple[str, str]] = []
    in_faq = False
    question: str | None = None
    for block in markdown.split("\n\n"):
        block = block.strip()
        if block.startswith("## "):
            in_faq = "question" in block.casefold() or "faq" in block.casefold()
            question = None
        elif in_faq and block.startswith("### "):
            question = re.sub(r"\\(.)", r"\1", block[4:]).strip()
        elif in_faq and question is not None and block:
            pairs.append((question, re.sub(r"\\(.)", r"\1", block)))
            question = None
    return pairs


def faq_echoes(question: str, answer: str) -> bool:
    """Whether the answer repeats its question rather than answering it: the question's body verbatim,
    five of its words in a row, or a question phrase dropped mid-sentence ("start with how many ...")."""
    q_words = [w.casefold() for w in _WORD.findall(question)]
    a_text = " ".join(w.casefold() for w in _WORD.findall(answer))
    body = q_words[1:] if q_words and re.fullmatch(_QUESTION_WORDS + "|" + _AUX, q_words[0]) else q_words
    if len(body) >= 3 and " ".join(body) in a_text:
        return True
    if any(" ".join(q_words[i : i + 5]) in a_text for i in range(len(q_words) - 4)):
        return True
    return bool(re.search(rf"\b(?:with|about|on|to|of|for)\s+(?:(?:{_QUESTION_WORDS})\s+(?:many|much|long|often)|"
                          rf"(?:{_QUESTION_WORDS}\s+)?(?:{_AUX})\s+(?:the|my|i|you|it|your|a|an))\b", a_text))


_QUESTION_START = re.compile(rf"^(?:(?:{_QUESTION_WORDS})|{_AUX})\b", re.IGNORECASE)
_NOT_REVIEWABLE = re.compile(
    r"\b(?:tomato(?:es)?|bread|loaf|recipes?|pancakes?|dough|meals?|snacks?|eats|breakfast|lunch|dinner|chicken|"
    r"soup|salad|vegetables?|fruit|spanish|english|french|grammar|vocabulary|japan|tokyo|kyoto|osaka|itinerary|"
    r"city|trip|travel|training|schedule|routine|technique|taxes?|savings|investing|etiquette|timeline|rules?)\b",
    re.IGNORECASE)
_PHYSICAL_HEADINGS = re.compile(r"materials|craftsmanship|durability|wear after|build quality|unboxing",
                                re.IGNORECASE)


def type_contradiction(keyword: str, content_type: str, title: str, outline: Iterable[str] = ()) -> str | None:
    """Why the content type (or the outline's headings) contradicts the keyword, or None when it fits.

    A question must get a title that keeps or rephrases it; "X vs Y" a comparison; "best ..." a list;
    "how to ..." a procedure; a review only when the keyword asks for one, and no hands-on product
    sections (materials, craftsmanship, durability) for foods, places, skills or services."""
    kw = keyword.casefold().strip()
    words = [w for w in _WORD.findall(kw) if w not in _SMALL]
    in_title = {_key(w) for w in _WORD.findall(title)}
    if " vs " in f" {kw} " or " versus " in f" {kw} ":
        if content_type != "comparison":
            return f"a comparison keyword got a {content_type}"
        return None
    if kw.startswith("how to "):
        return None if content_type == "how-to" else f"a how-to keyword got a {content_type}"
    if _QUESTION_START.match(kw):
        kept = sum(1 for w in words if _key(w) in in_title) / max(1, len(words))
        if kept < 0.6 or not ("?" in title or _QUESTION_START.match(title)):
            return "the title does not keep or rephrase the question"
        return None
    if re.match(r"^(?:best|top)\b(?! (?:way|time|place|age) to\b)", kw) and content_type not in ("listicle",):
        return f"a 'best' keyword got a {content_type}"
    if content_type == "review" and not re.search(r"\breviews?\b", kw):
        return "a review of something the keyword does not ask to review"
    if _NOT_REVIEWABLE.search(kw) and any(_PHYSICAL_HEADINGS.search(h) for h in outline):
        return "hands-on product sections for something that is not a product"
    return None
