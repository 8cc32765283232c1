"""What a keyword asks for, read from its words: the kind of article, its subject, and the pieces a title needs.

`analyse` turns "how many solar panels do i need" into a question about "solar panels" (asked by "how
many"), "pbt vs abs keycaps" into a comparison of "PBT keycaps" and "ABS keycaps", "how to feed a
sourdough starter" into the procedure "feed a sourdough starter", "sourdough starter not rising" into a
problem, "best trail running shoes" into a list, and so on; anything else is a topic. The word lists it
reads are data (`ai/data/keywords.json`). The kinds decide the content type (`KIND_TYPES`): a keyword
never gets a template its words contradict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from ai.local_templates import english, keyword_lists

# The content type each kind of keyword gets (ai/data/content_types.json).
KIND_TYPES = {"question": "answer", "howto": "how-to", "comparison": "comparison", "list": "listicle",
              "checklist": "checklist", "problem": "troubleshooting", "review": "review", "cost": "guide",
              "service": "guide", "topic": "guide"}


@dataclass(frozen=True)
class Shape:
    """A keyword read for what it asks. Phrases are lowercase; `ai.local_case.cased` restores names."""

    keyword: str  # normalised: lowercase, single spaces, no trailing "?"
    kind: str  # question, howto, comparison, list, checklist, problem, review, cost, service or topic
    subject: str  # what the article is about, intent words dropped ("trail running shoes for women")
    core: str  # the subject without its qualifier ("trail running shoes")
    head: str  # the core's last word ("shoes")
    qualifier: str = ""  # "for women", "in spanish", "at home"
    category: str = "general"  # product, food, software, service, money, living, place or general
    options: tuple[str, ...] = ()  # comparison: the options, completed ("pbt keycaps", "abs keycaps")
    question: str = ""  # question: as asked ("how many solar panels do i need")
    to_reader: str = ""  # question: as said to the reader ("how many solar panels do you need")
    asks: str = ""  # question: "yes/no", "how many", "how long", "why", "what", "when", "which", "who", "where", "how"
    action: str = ""  # howto: the procedure as a verb phrase ("feed a sourdough starter")
    gerund: str = ""  # howto: the procedure as a gerund phrase ("feeding a sourdough starter")
    infinitive: bool = False  # question: asked without an auxiliary ("how often to water ...")
    clause: bool = False  # problem: stated as a clause ("starter not rising"), not a noun ("root rot")
    list_style: str = ""  # list: "advice" (tips, ideas: the items are ours to write) or "things" (apps, hotels)
    year: int | None = None  # a year the keyword names

    @property
    def content_type(self) -> str:
        return KIND_TYPES[self.kind]


def normalise(keyword: str) -> str:
    """Lowercase, single-spaced, without end punctuation or curly apostrophes."""
    text = keyword.replace("\u2019", "'").casefold()
    return " ".join(text.split()).strip(" ?!.,;")


def _words_before(words: list[str], stops: frozenset[str]) -> list[str]:
    for index, word in enumerate(words):
        if word in stops:
            return words[:index]
    return words


def split_qualifier(words: list[str]) -> tuple[list[str], list[str]]:
    """("trail running shoes", "for women"): the qualifier starts at the first qualifier word after the first."""
    starts = keyword_lists().qualifier_words
    inside: set[int] = set()
    for compound in keyword_lists().compounds:
        parts = compound.split()
        for index in range(len(words) - len(parts) + 1):
            if words[index : index + len(parts)] == parts:
                inside |= set(range(index + 1, index + len(parts)))
    for index in range(1, len(words)):
        if words[index] in starts and index not in inside:
            return words[:index], words[index:]
    return words, []


def _strip_determiners(words: list[str]) -> list[str]:
    lists = keyword_lists()
    while words and words[0] in lists.determiners:
        words = words[1:]
    return words


def category_of(words: list[str]) -> str:
    """The subject's category: its head noun's if the head is listed, else the first category any word is in."""
    lists = keyword_lists()
    core, _ = split_qualifier(words)
    if set(words) & lists.categories["place"] or (core and core[-1] in lists.places):
        return "place"
    head = core[-1] if core else ""
    for name, nouns in lists.categories.items():
        if head in nouns:
            return name
    for name, nouns in lists.categories.items():
        if any(w in nouns for w in core):
            return name
    return "general"


def _shape(keyword: str, kind: str, subject: list[str], **extra: object) -> Shape:
    """A shape whose subject is `subject` (intent words already dropped)."""
    subject = _strip_determiners(subject) or keyword.split()
    core, qualifier = split_qualifier(subject)
    year = re.search(r"\b(?:19|20)\d\d\b", keyword)
    category = str(extra.pop("category", "")) or category_of(subject)
    return Shape(keyword=keyword, kind=kind, subject=" ".join(subject), core=" ".join(core), head=core[-1],
                 qualifier=" ".join(qualifier), category=category, year=int(year.group()) if year else None,
                 **extra)  # type: ignore[arg-type]


def _to_reader(words: list[str]) -> str:
    pronouns = keyword_lists().pronouns
    return " ".join(pronouns.get(w, w) for w in words)


def _clean_subject(words: list[str]) -> list[str]:
    """A question's stretch of words reduced to its noun phrase: a leading pronoun and its verb, "to" and
    its verb, prepositions, determiners and a gerund dropped; cut before a predicate ("last", "dense")."""
    lists = keyword_lists()
    words = _strip_determiners(words)
    if words and words[0] in ("i", "you", "we", "it", "they"):
        words = words[2:]
    if words and words[0] == "to":
        words = words[2:]
    while words and (words[0] in lists.particles or words[0] in lists.qualifier_words or words[0] == "until"):
        words = _strip_determiners(words[1:])
    if len(words) > 1 and _is_gerund(words[0]):
        words = _strip_determiners(words[1:])
    words = [w for w in words if w not in lists.pronouns and w not in ("your", "you")]
    core, qualifier = split_qualifier(_words_before(words, lists.predicates | lists.auxiliaries))
    while len(core) > 1 and (core[-1].endswith("ing") or (core[-1].endswith("ed") and len(core[-1]) > 5)
                             or (core[-1].endswith("ly") and len(core[-1]) > 5 and core[-1] != "family")):
        core = core[:-1]
    return core + qualifier if core else []


def _question_subject(words: list[str]) -> list[str]:
    """The noun phrase a question is about: "how many solar panels do i need" -> "solar panels",
    "how much energy does a solar panel produce" -> "solar panel", "how often to water indoor plants"
    -> "indoor plants"."""
    lists = keyword_lists()
    rest = words[1:] if words[0] in lists.question_words else words
    if words[0] == "how" and rest and rest[0] in lists.measure_words:
        rest = rest[1:]
    if words[0] in ("what", "which") and len(rest) > 1 and rest[0] not in lists.auxiliaries and rest[0] != "to":
        rest = rest[1:]  # "what weight kettlebell should i use"
    if "to" in rest[:3] and not set(rest[: rest.index("to")]) & lists.auxiliaries:
        rest = rest[rest.index("to") :]  # "how far in advance to book ..."
    split = next((i for i, w in enumerate(rest) if w in lists.auxiliaries), len(rest))
    before, after = _clean_subject(rest[:split]), _clean_subject(rest[split + 1 :])
    if len(before) >= 2 or (before and not after):
        return before
    if not after and "to" in rest:
        after = _clean_subject(rest[rest.index("to") :])
    return after or before or [w for w in rest if w not in lists.auxiliaries] or words


def _question(keyword: str, words: list[str], asked: list[str] | None = None) -> Shape:
    """A question keyword (or `asked`, the question a fragment stands for)."""
    lists = keyword_lists()
    asked = asked or words
    if asked[0] in lists.auxiliaries:
        asks = "yes/no"
    elif asked[0] == "how" and len(asked) > 1 and asked[1] in lists.measure_words:
        asks = f"how {asked[1]}"
    else:
        asks = asked[0]
    infinitive = next((i for i, w in enumerate(asked[:5]) if w == "to"), None)
    to_reader = _to_reader(asked)
    bare = infinitive is not None and not set(asked[:infinitive]) & lists.auxiliaries
    if bare and infinitive is not None:
        to_reader = " ".join([*asked[:infinitive], "should you", *asked[infinitive + 1 :]])
    if asked is words:
        subject = _question_subject(asked)
    elif "to" in words:  # "cheapest way to travel around japan": about travelling around Japan
        subject = words[words.index("to") + 1 :]
    else:
        subject = [w for w in words if w not in asked]
    return _shape(keyword, "question", subject, question=" ".join(asked), to_reader=to_reader, asks=asks,
                  infinitive=bare)


_FRAGMENTS = (  # "filament dryer worth it" asks "is a filament dryer worth it?"
    (re.compile(r"^(.+?) when (?:is it )?worth it$"), "when is it worth it"),
    (re.compile(r"^(.+?) (?:is it )?worth it$"), "is it worth it"),
    (re.compile(r"^(.+?) how long$"), "how long does it take"),
    (re.compile(r"^(.+?) how often$"), "how often is enough"),
    (re.compile(r"^(.+?) is it (safe|normal|ok|okay|legal|bad)$"), "is it {0}"),
    (re.compile(r"^(.+?) who pays$"), "who pays"),
)


def _comparison(keyword: str, left: str, right: str) -> Shape:
    """"pbt vs abs keycaps": the right side's head noun completes a shorter left side, when it is a noun
    of the categories ("keycaps", "funds") the left side does not already name."""
    lists = keyword_lists()
    right_words, qualifier = split_qualifier(right.split())
    left_words = left.split()
    head = right_words[-1]
    nouns = frozenset().union(*lists.categories.values())
    if len(left_words) < len(right_words) and head in nouns and not any(w.endswith(head) for w in left_words):
        left_words = [*left_words, head]
    options = (" ".join(left_words), " ".join(right_words))
    subject = keyword.split()[: len(keyword.split()) - len(qualifier)]
    return _shape(keyword, "comparison", subject + qualifier, options=options,
                  category=category_of([*right_words, *qualifier]))


def _howto(keyword: str, action: list[str], gerund_words: list[str] | None = None) -> Shape:
    """A procedure: `action` is the verb phrase ("feed a sourdough starter"), or [] with `gerund_words`."""
    from ai.local_text import gerund_phrase

    lists = keyword_lists()
    verb_phrase = action or gerund_words or []
    two_word_verb = len(verb_phrase) > 2 and verb_phrase[0] in lists.verb_prefixes and \
        (verb_phrase[1] in ("train", "training", "clean", "cleaning") or verb_phrase[1].endswith("ing"))
    start = 2 if two_word_verb else 1
    obj = verb_phrase[start:]
    if verb_phrase[0] in lists.linking_verbs and obj and obj[0] not in lists.particles:
        obj = []  # "stay productive working from home" is named whole
    while obj and obj[0] in lists.particles:
        obj = obj[1:]
    if "to" in obj[1:]:
        obj = obj[: obj.index("to", 1)]  # "teach a puppy to sit"
    while len(obj) > 1 and obj[-1] in lists.trailing_adverbs:
        obj = obj[:-1]
    whole = gerund_phrase(action) if action else " ".join(gerund_words or [])
    subject = obj or whole.split()
    if action:
        return _shape(keyword, "howto", subject, action=" ".join(action), gerund=whole)
    return _shape(keyword, "howto", subject, gerund=whole)


def _is_gerund(word: str) -> bool:
    lists = keyword_lists()
    return len(word) > 5 and word.endswith("ing") and word not in lists.gerund_nouns


@lru_cache(maxsize=65536)
def analyse(keyword: str) -> Shape:
    """What `keyword` asks for (see `Shape`)."""
    text = normalise(keyword) or keyword.casefold().strip() or "?"
    words = text.split()
    lists = keyword_lists()
    first = words[0]
    if (first in lists.question_words and words[1:2] != ["to"]) or (first in lists.auxiliaries and len(words) > 2):
        return _question(text, words)
    if first in lists.question_words and words[1:2] == ["to"] and first != "how":
        return _question(text, words)  # "when to ...", "what to ..."
    for separator in (" vs. ", " vs ", " versus "):
        if separator in text:
            left, right = text.split(separator, 1)
            return _comparison(text, left, right)
    if " or " in f" {text} " and len(words) <= 7 and words[0] not in lists.list_starts:
        left, right = text.split(" or ", 1)
        if left and right:
            return _comparison(text, left, right)
    if re.match(r"^(?:best|cheapest|easiest|fastest|quickest|safest) (?:way|time|place|age) to\b", text):
        return _question(text, words, ["what", "is", "the", *words])  # "cheapest way to travel around japan"
    for pattern, question in _FRAGMENTS:
        match = pattern.match(text)
        if match:
            subject = match.group(1).split()
            asked = question.format(*match.groups()[1:]).split()
            return _shape(text, "question", subject, question=f"{match.group(1)}: {' '.join(asked)}",
                          to_reader=_to_reader(subject) + ": " + " ".join(asked),
                          asks="yes/no" if asked[0] == "is" else " ".join(asked[:2]))
    match = re.match(r"^(.+?) how to (\w+)$", text)
    if match:  # "stockfish analysis how to read"
        return _howto(text, [match.group(2), *match.group(1).split()])
    if words[:2] == ["how", "to"] and len(words) > 2:
        return _howto(text, words[2:])
    if first in lists.how_to_verbs and len(words) > 1 and words[1] not in lists.qualifier_words:
        return _howto(text, words)
    for index in (0, 1):
        if index < len(words) - 1 and _is_gerund(words[index]) and \
                (index == 0 or words[0] in lists.verb_prefixes or not _is_gerund(words[0])) and \
                any(w in lists.determiners_gerund for w in words[index + 1 : index + 3]):
            return _howto(text, [], words)
    core, qualifier = split_qualifier(words)
    if "step by step" in text or core[-1] in lists.procedure_tails:
        subject = [w for w in core if w not in lists.procedure_tails] or core
        subject = re.sub(r"\bstep by step\b", "", " ".join(subject)).split() or core
        return _shape(text, "howto", subject + qualifier)
    if core[-1] in lists.advice_heads or words[-1] in lists.advice_heads:
        return _shape(text, "list", words, list_style="advice")
    if set(words) & lists.problem_words or "smells like" in text or text.endswith(" what to do"):
        return _problem(text, words)
    if set(words) & lists.review_words:
        subject = [w for w in words if w not in lists.review_words]
        return _shape(text, "review", subject)
    if core[-1] in lists.checklist_heads or (core[-1] == "list" and len(core) > 1):
        subject = [w for w in core if w not in lists.checklist_heads and w != "list"] or core
        return _shape(text, "checklist", subject + qualifier)
    if core[-1] in lists.cost_words or words[-1] in lists.cost_words:
        subject = [w for w in words if w not in lists.cost_words]
        subject = re.sub(r"\bper \w+$", "", " ".join(subject)).split() or subject
        return _shape(text, "cost", subject)
    plural = core[-1].endswith("s") and not core[-1].endswith("ss")
    if first in ("best", "top") or (first in lists.list_starts and (plural or core[-1] == "way")) or \
            core[-1] in lists.list_heads or words[-1] in lists.list_heads or "things to do" in text or \
            (re.search(r"\bunder \d", text) and category_of(words) == "product"):
        subject = words[1:] if first in ("best", "top") and len(words) > 1 else words
        style = "advice" if core[-1] in lists.advice_heads else "things"
        return _shape(text, "list", subject, list_style=style)
    if "near me" in text or core[-1] in lists.service_words:
        subject = re.sub(r"\s*near me\b", "", text).split() or words
        return _shape(text, "service", subject, category="service")
    subject = [w for w in words if w not in lists.intent_fillers] or words
    if _is_gerund(words[0]) and len(words) > 1:
        return _shape(text, "topic", subject, category="general")  # "sharpening chisels": a skill, not a product
    return _shape(text, "topic", subject)


def _problem(text: str, words: list[str]) -> Shape:
    """A symptom: the subject is what has it ("sourdough starter" in "sourdough starter not rising")."""
    lists = keyword_lists()
    if text.endswith(" what to do") and len(words) > 3:  # "frozen pipes what to do"
        return _shape(text, "problem", words[:-3], clause=False)
    clause = bool(set(words) & lists.clause_problem_words) or "smells like" in text
    if clause:
        subject = _words_before(words, lists.clause_problem_words | {"smells"})
        if not subject:
            subject = [w for w in words if w not in lists.clause_problem_words]
    else:
        subject = [w for w in words if w not in lists.fix_words and w not in lists.cause_words]
    return _shape(text, "problem", subject or words, clause=clause)


@cache
def question_starts() -> frozenset[str]:
    """Words a question keyword starts with (the question words and auxiliaries)."""
    lists = keyword_lists()
    return lists.question_words | lists.auxiliaries | frozenset(english().question_starts)
