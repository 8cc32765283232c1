"""An article's plan: its content type, title slots and sections, from its primary keyword and the
cluster's other keywords.

The content type follows what the keyword asks (`ai.local_keywords`): a question gets an answer, "X vs
Y" a comparison, "best X" a list, "how to X" a procedure, a symptom a troubleshooting guide, and so on.
Sections are named after the subject and the cluster's related keywords ("Waterproof Trail Running
Shoes", "How Long Do Trail Running Shoes Last?"), so two clusters rarely share a heading.

Both the idea writer and the article writer build the plan: the idea stores the related keywords it
used as its target keywords, and the article writer rebuilds the same plan from them to know what each
stored heading is for. That is why the related keywords are ranked by a score of their own (never by
their position in a list) and every random choice is seeded by the cluster, the keyword and the type.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ai.local_case import cased, title_case
from ai.local_keywords import KIND_TYPES, Shape, analyse, normalise, split_qualifier
from ai.local_templates import ContentType, SectionRow, content_types, keyword_lists
from ai.local_text import capitalise, fill, join_phrases, plural, seeded, slots_of

_NOUN_KINDS = frozenset({"topic", "list", "review", "cost", "service", "checklist", "question"})
_FACET_ROLES = {"question": "facet_question", "howto": "facet_howto", "comparison": "facet_compare",
                "problem": "facet_problem"}


@dataclass(frozen=True)
class Section:
    role: str  # the plan in ai/data/sections.json that writes it ("answer", "step", "facet_question", ...)
    h2: str
    h3s: tuple[str, ...] = ()
    subject: str = ""  # what the section is about, as a phrase for sentences
    h3_subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    shape: Shape
    kind: str  # the content type
    variant: str  # which of the type's title lists fits the keyword
    slots: dict[str, str]  # heading slots: "K", "S", ... title-cased; "k", "s", ... as in a sentence
    sections: tuple[Section, ...]
    faq: tuple[str, ...]  # questions from the cluster, put to the reader
    facets: tuple[str, ...]  # aspects the subject depends on ("grind size", "price"), for sentences
    related: tuple[str, ...]  # related subjects (the cluster's other keywords), for sentences
    refs: tuple[str, ...]  # ways to name the subject without repeating the primary keyword
    used: tuple[str, ...]  # the related keywords the plan uses, in the order it chose them
    faq_heading: str
    conclusion_heading: str
    subject: str = ""  # the article's subject, as a phrase for sentences
    extra: dict[str, str] = field(default_factory=dict)


def content_type_for(keyword: str) -> str:
    """The content type `keyword` asks for."""
    return KIND_TYPES[analyse(keyword).kind]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _content_words(text: str) -> set[str]:
    lists = keyword_lists()
    skip = lists.qualifier_words | lists.determiners | lists.question_words | lists.auxiliaries | \
        lists.list_starts | {"and", "or", "vs", "how", "best", "i", "you", "my", "your", "a", "an", "the", "of"}
    return {_stem(w) for w in normalise(text).split() if w not in skip}


def _score(seed: str, keyword: str, anchor: set[str]) -> tuple[int, int]:
    """A related keyword's rank: keywords sharing a word with the subject first, then a stable hash of
    the keyword itself (never its position, so a subset of the candidates ranks in the same order)."""
    digest = int.from_bytes(hashlib.sha256(f"{seed}\x1f{keyword}".encode()).digest()[:8], "big")
    return (0 if _content_words(keyword) & anchor else 1, digest)


def heading_for(shape: Shape) -> str:
    """A related keyword as a section heading, in the form its kind reads best in."""
    if shape.kind == "question":
        return title_case(shape.to_reader) + "?"
    if shape.kind == "howto":
        if shape.action:
            return "How to " + title_case(shape.action)
        return title_case(shape.gerund or shape.keyword)
    if shape.kind in ("list", "review") and shape.list_style != "advice":
        return title_case(shape.subject)
    if shape.kind == "topic":
        return title_case(shape.subject)
    return title_case(shape.keyword.replace("near me", "near you"))


def subject_phrase(shape: Shape) -> str:
    """What a keyword is about, as a phrase for a sentence."""
    if shape.kind in ("cost", "checklist"):
        return cased(shape.keyword)  # "car detailing prices" is not "car detailing"
    if shape.kind == "howto":
        return cased(shape.gerund or shape.subject)
    if shape.kind == "comparison" and len(shape.options) == 2:
        return cased(f"{shape.options[0]} and {shape.options[1]}")
    return cased(shape.subject)


def _aspects(shape: Shape, picker: _Picker, topic: str, seed: str) -> list[str]:
    """What the subject depends on: the cluster's keywords that name an aspect of it ("espresso grind size"
    -> "grind size"), then the category's usual ones ("build quality", "price")."""
    lists = keyword_lists()
    own = {_stem(w) for w in normalise(f"{shape.core} {topic}").split()}
    found = []
    for keyword in picker.ranked:
        related = picker.shapes[keyword]
        if related.kind != "topic" or related.head not in lists.attribute_heads:
            continue
        words = [w for w in related.core.split() if _stem(w) not in own]
        if words and len(words) <= 3 and words[-1] == related.head:
            found.append(keyword)
            if len(found) == 3:
                break
    aspects = []
    for keyword in found:
        picker.used.append(keyword)
        related = picker.shapes[keyword]
        aspects.append(cased(" ".join(w for w in related.core.split() if _stem(w) not in own)))
    category = "cost" if shape.kind == "cost" else shape.category
    generic = list(lists.generic_facets.get(category, lists.generic_facets["general"]))
    aspects += [g for g in seeded(seed, "generic").sample(generic, k=len(generic)) if g not in aspects]
    return list(dict.fromkeys(aspects))


def _facet(shape: Shape, primary: Shape) -> str:
    """A related keyword as an aspect of the subject, for sentences: its subject, "best" dropped, the
    primary keyword's words shortened."""
    words = [w for w in subject_phrase(shape).split() if w.casefold() not in ("best", "top")]
    return _shorten(" ".join(words), primary)


def _shorten(phrase: str, primary: Shape) -> str:
    """A related subject without the primary keyword's full words: "waterproof trail running shoes" ->
    "waterproof shoes" in an article on "trail running shoes"."""
    core = cased(primary.core)
    if len(core.split()) > 1 and core.casefold() in phrase.casefold() and phrase.casefold() != core.casefold():
        return re.sub(re.escape(core), cased(primary.head), phrase, count=1, flags=re.IGNORECASE)
    return phrase


def _refs(shape: Shape, topic: str, short: str) -> tuple[str, ...]:
    """Ways to name the subject in a sentence that do not repeat the primary keyword whole: its core
    ("macro photography" for "macro photography on phone"), its short form, the head noun with "your" or
    "these", and the cluster's name when it names the same thing."""
    lists = keyword_lists()
    keyword = shape.keyword

    def repeats(phrase: str) -> bool:
        return _phrase_in(keyword.split(), phrase)

    refs: list[str] = []
    for phrase in (shape.subject, shape.core, short):
        if phrase and not repeats(phrase):
            refs.append(cased(phrase))
    if short:
        refs.append(f"your {cased(plural(short))}")
    head = shape.head
    usable_head = head.isalpha() and cased(head) == head and head not in lists.places and len(head) > 2
    if usable_head and plural(head) != head:
        many = plural(head)
        refs += [f"your {many}", f"these {many}"] if many != head else [f"your {head}", f"these {head}"]
    if topic and not repeats(topic) and _content_words(topic) & _content_words(shape.subject):
        refs.append(cased(normalise(topic)))
    return tuple(dict.fromkeys(refs)) or ("it",)


def _phrase_in(phrase: list[str], text: str) -> bool:
    words = [_stem(w) for w in normalise(text).split()]
    target = [_stem(w) for w in phrase]
    return any(words[i : i + len(target)] == target for i in range(len(words) - len(target) + 1))


def short_form(shape: Shape, related: list[str], topic: str) -> str:
    """A shorter name for the subject, so headings and sentences need not repeat the primary keyword:
    the longest part of it that names the same thing in a related keyword or the cluster's name ("trail
    shoes", "solar panels", "index funds"); else the thing a mass noun is about ("fiddle leaf fig" for
    "fiddle leaf fig care"); else the core without its first word."""
    lists = keyword_lists()
    core = shape.core.split()
    head = core[-1]
    texts = [*related, topic]
    if head in lists.mass_nouns and len(core) > 1:
        for size in range(len(core) - 1, 0, -1):
            for start in range(len(core) - size):
                part = core[start : start + size]
                if part[-1] == core[-2] and any(_phrase_in(part, t) for t in texts):
                    return " ".join(part)
        return " ".join(core[:-1])
    candidates = [core[i : i + n] for n in range(len(core) - 1, 0, -1) for i in range(len(core) - n + 1)]
    candidates.insert(0, [core[0], head]) if len(core) > 2 else None
    for part in candidates:
        if _stem(part[-1]) == _stem(head) and len(part) > 1 and any(_phrase_in(part, t) for t in texts):
            return " ".join(part)
    if len(core) > 2:
        return " ".join(core[1:])
    return head


def _variant(shape: Shape, kind: str, spec: ContentType) -> str:
    lists = keyword_lists()
    words = set(shape.keyword.split())
    choice = {
        "answer": "question",
        "how-to": "action" if shape.action else "gerund" if shape.gerund else "plain",
        "comparison": "qualified" if shape.qualifier else "plain",
        "listicle": "advice" if shape.list_style == "advice"
        else "things" if shape.keyword.split()[0] in lists.list_starts or shape.head in lists.choice_heads
        or (shape.category in ("product", "software") and shape.head not in lists.list_heads) else "topics",
        "troubleshooting": "todo" if shape.keyword.endswith(" what to do")
        else "fix" if words & lists.fix_words else "cause" if words & lists.cause_words
        else "clause" if shape.clause else "noun",
        "review": "default",
        "checklist": "named" if words & (lists.checklist_heads | {"list"}) else "plain",
        "guide": "document" if shape.head in lists.document_heads
        else shape.kind if shape.kind in ("cost", "service")
        else shape.category if shape.category in ("product", "place", "money", "service") else "general",
    }.get(kind, "")
    return choice if choice in spec.titles else next(iter(spec.titles))


def _slots(shape: Shape, kind: str, topic: str) -> dict[str, str]:
    """Heading slots: title-cased under "K", "S", ..., as in a sentence under "k", "s", ..."""
    lists = keyword_lists()
    keyword = shape.keyword.replace("near me", "near you")
    lower: dict[str, str] = {"k": keyword, "s": shape.subject, "c": plural(shape.core)}
    if shape.kind == "question":
        lower["q"] = shape.question
        lower["r"] = shape.to_reader + "?"
    if shape.kind == "comparison":
        core = shape.keyword[: len(shape.keyword) - len(shape.qualifier)].strip()
        lower["c"] = re.sub(r" (?:vs\.?|versus|or) ", " and ", core, count=1)
        if len(shape.options) == 2:
            lower["a"], lower["b"] = shape.options
    if shape.kind == "howto" or kind == "how-to":
        lower["g"] = shape.gerund or shape.subject
        if normalise(lower["g"]) == shape.keyword:  # "leash training a puppy": "leash training your puppy"
            lower["g"] = _yours(lower["g"])
        lower["c"] = lower["g"]
        if shape.action:
            lower["act"] = shape.action
        else:
            lower["w"] = shape.keyword
    if shape.kind == "problem":
        words = [w for w in shape.keyword.removesuffix(" what to do").split()
                 if w not in lists.fix_words | lists.cause_words]
        lower["p"] = " ".join(words) or shape.keyword
        if not shape.clause:
            lower["c"] = shape.core
    if shape.kind == "list":
        lower["l"] = f"{plural(shape.core)} {shape.qualifier}".strip()  # "cheap trail running shoes under 100"
    if shape.kind == "list" and shape.list_style == "advice":
        words = shape.keyword.split()
        heads = [i for i, w in enumerate(words) if w in lists.advice_heads]
        lower["ct"] = " ".join(words[: heads[-1]] + words[heads[-1] + 1 :]) if heads else shape.core
    if shape.year is not None:
        lower["y"] = str(shape.year)
    slots = {key: cased(value) for key, value in lower.items()}
    for key, value in lower.items():
        upper = key.upper() if len(key) == 1 else key[:1].upper() + key[1:]
        if key == "q":
            slots["Q"] = title_case(value) + ("" if shape.infinitive else "?")
        elif key == "r":
            slots["R"] = title_case(value)
        else:
            slots[upper] = title_case(value)
    return slots


def _yours(phrase: str) -> str:
    """A procedure said to the reader: its first "a"/"an"/"the" becomes "your", its qualifier goes."""
    words = phrase.split()
    for index, word in enumerate(words):
        if word in ("a", "an", "the") and index > 0:
            core, _ = split_qualifier(words[index + 1 :])
            return " ".join([*words[:index], "your", *core])
    core, qualifier = split_qualifier(words)
    return " ".join(core) if qualifier else phrase


def fillable(template: str, slots: dict[str, str]) -> bool:
    """Whether every slot the template names has a value."""
    return all(name in slots for name in slots_of(template))


def _heading(templates: tuple[str, ...], rng: random.Random, slots: dict[str, str]) -> str | None:
    """One of `templates` that `slots` can fill, filled (a question mark already ends a phrase: "?:" -> "?")."""
    usable = [t for t in templates if fillable(t, slots)]
    if not usable:
        return None
    return tidy(fill(rng.choice(usable), rng, slots))


def tidy(text: str) -> str:
    """Punctuation a filled heading may double: "Need?: A Straight Answer" -> "Need? A Straight Answer"."""
    return re.sub(r"\?\s*[:,]", "?", re.sub(r"\s+", " ", text)).strip()


class _Picker:
    """Hands out related keywords in rank order, each at most once."""

    def __init__(self, shape: Shape, candidates: list[str], seed: str, topic: str) -> None:
        anchor = _content_words(shape.core) | _content_words(topic)
        primary = normalise(shape.keyword)
        seen = {primary}
        ranked = []
        for keyword in sorted(candidates, key=lambda k: _score(seed, normalise(k), anchor)):
            if normalise(keyword) not in seen:
                seen.add(normalise(keyword))
                ranked.append(keyword)
        self.ranked = ranked
        self.shapes = {k: analyse(k) for k in ranked}
        self.used: list[str] = []

    def take(self, count: int, kinds: frozenset[str] | None = None, head: str | None = None,
             avoid: set[str] | None = None, not_head: str | None = None,
             categories: frozenset[str] | None = None) -> list[str]:
        taken: list[str] = []
        for keyword in self.ranked:
            if len(taken) >= count:
                break
            if keyword in self.used:
                continue
            shape = self.shapes[keyword]
            if kinds is not None and shape.kind not in kinds:
                continue
            if head is not None and _stem(shape.head) != _stem(head):
                continue
            if not_head is not None and _stem(shape.head) == _stem(not_head):
                continue
            if categories is not None and shape.category not in categories:
                continue
            if avoid is not None and heading_for(shape).casefold() in avoid:
                continue
            taken.append(keyword)
            self.used.append(keyword)
        return taken


def build_plan(keyword: str, kind: str, topic: str, candidates: list[str] | tuple[str, ...],
               year: int | None = None) -> Plan:
    """The plan of the article targeting `keyword` as content type `kind`, in a cluster named `topic`
    whose other keywords are `candidates`."""
    shape = analyse(keyword)
    spec = content_types().get(kind) or content_types()["guide"]
    kind = kind if kind in content_types() else "guide"
    seed = f"{normalise(topic)}\x1f{shape.keyword}\x1f{kind}"
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    picker = _Picker(shape, list(candidates), seed, topic)
    slots = _slots(shape, kind, topic)
    short = ""
    if "ct" in slots:  # a list of tips is named without "tips" ("Where to Start with Raised Bed Gardening")
        slots["c"], slots["C"] = slots["ct"], slots["Ct"]
    elif shape.kind not in ("question", "comparison", "howto") and \
            _phrase_in(shape.keyword.split(), slots["c"]) and len(shape.core.split()) > 1:
        short = short_form(shape, picker.ranked, topic)
        named = plural(short) if short.split()[-1] == shape.head else short  # "trail shoes", "fiddle leaf fig"
        slots["c"] = cased(named)
        slots["C"] = title_case(named)
    if year is not None and shape.year is None:
        slots["y"] = slots["Y"] = str(year)
    variant = _variant(shape, kind, spec)
    headings: set[str] = {slots["K"].casefold()}
    sections: list[Section] = []
    primary_words = _content_words(shape.keyword)
    refs = _refs(shape, topic, short)
    if shape.kind == "comparison" and len(shape.options) == 2:
        subject = join_phrases([cased(o) for o in shape.options])
    else:
        subject = subject_phrase(shape) if shape.kind != "question" else cased(shape.subject)
    if _phrase_in(shape.keyword.split(), subject) and refs:
        subject = refs[0]  # sentences name the subject without repeating the keyword whole

    def add(section: Section) -> None:
        if section.h2.casefold() not in headings:
            headings.add(section.h2.casefold())
            sections.append(section)

    aspects = _aspects(shape, picker, topic, seed)

    def aspect_heads(count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        chosen = aspects[:count]
        return tuple(title_case(f"{slots['c']} and {a}") for a in chosen), tuple(chosen)

    for row in spec.sections:
        if not _applies(row, shape, variant) or (row.optional and rng.random() < 0.4):
            continue
        if row.role == "steps":
            count = rng.randint(*(row.count or (4, 5)))
            picked = sorted(rng.sample(range(len(row.headings)), k=min(count, len(row.headings))))
            for number, index in enumerate(picked, start=1):
                text = _heading((row.headings[index],), rng, slots)
                if text:
                    add(Section("step", f"Step {number}: {text}", subject=subject))
        elif row.role == "items":
            variant = _items(row, rng, shape, picker, slots, variant, add, headings)
        elif row.role == "related":
            count = rng.randint(*(row.count or (1, 2)))
            for keyword_ in picker.take(count, avoid=headings):
                related = picker.shapes[keyword_]
                add(Section(_FACET_ROLES.get(related.kind, "facet"), _unrepeat(heading_for(related), shape, short),
                            subject=_shorten(subject_phrase(related), shape)))
        else:
            text = _heading(row.h2, rng, slots)
            if row.role == "practice" and variant == "advice":  # the keyword's H2 in a list of tips
                text = f"How to Avoid {slots['K']}" if shape.head == "mistakes" \
                    else f"Putting These {slots['K']} into Practice"
            if text is None:
                continue
            h3s: tuple[str, ...] = ()
            h3_subjects: tuple[str, ...] = ()
            if row.h3 == "aspects":
                h3s, h3_subjects = aspect_heads(rng.randint(2, 3))
            own = {"side_a": slots.get("a"), "side_b": slots.get("b")}.get(row.role) or subject
            add(Section(row.role, text, h3s, subject=own, h3_subjects=h3_subjects))
    faq = tuple(capitalise(cased(picker.shapes[k].to_reader)) + "?"
                for k in picker.take(2, frozenset({"question"}), avoid=headings))
    picker.take(3, _NOUN_KINDS | {"howto"})
    nearby = [_facet(picker.shapes[k], shape) for k in picker.used if picker.shapes[k].kind in _NOUN_KINDS | {"howto"}]
    nearby = [f for f in dict.fromkeys(nearby) if f.casefold() != slots["s"].casefold() and f not in aspects
              and not _content_words(f) >= primary_words and len(f.split()) <= 6][:5]
    return Plan(shape=shape, kind=kind, variant=variant, slots=slots, sections=tuple(sections), faq=faq,
                facets=tuple(aspects), related=tuple(nearby) or tuple(aspects), refs=refs, used=tuple(picker.used),
                faq_heading=_heading(spec.faq, rng, slots) or "Frequently Asked Questions",
                conclusion_heading=_heading(spec.conclusion, rng, slots) or "Conclusion",
                subject=subject)


def _unrepeat(heading: str, shape: Shape, short: str) -> str:
    """A related keyword's heading with the primary keyword's words replaced by its short form."""
    if not short:
        return heading
    pattern = r"(?<![\w'])" + r"\W+".join(re.escape(w) for w in shape.keyword.split()) + r"(?![\w'])"
    return re.sub(pattern, title_case(short), heading, count=1, flags=re.IGNORECASE)


def _applies(row: SectionRow, shape: Shape, variant: str) -> bool:
    if row.only and shape.category not in row.only:
        return False
    if row.only_variant and variant not in row.only_variant:
        return False
    return not (row.skip and variant in row.skip)


def _items(row: SectionRow, rng: random.Random, shape: Shape, picker: _Picker, slots: dict[str, str],
           variant: str, add: Callable[[Section], None], headings: set[str]) -> str:
    """A list's items: types of the subject ("Waterproof Trail Running Shoes") when the cluster names three
    or more, else related subjects; for tips and ideas, the related keywords, topped up from the row's
    headings. Returns the title variant the items make true ("types" promises a count of types)."""
    low, high = row.count or (4, 6)
    count = rng.randint(low, high)
    add_section = add
    if variant == "advice":
        taken = picker.take(count, frozenset({"topic", "howto", "list", "question"}), avoid=headings,
                            categories=frozenset({"general", "living", "food", "money", "place"}))
        names = [heading_for(picker.shapes[k]) for k in taken]
        subjects = [_shorten(subject_phrase(picker.shapes[k]), shape) for k in taken]
        fillers = [t for t in row.headings if fillable(t, slots)]
        for template in seeded(slots["k"], "fillers").sample(fillers, k=len(fillers)):
            if len(names) >= low:
                break
            names.append(tidy(fill(template, rng, slots)))
            subjects.append(slots.get("ct", slots["s"]))
        for number, (name, subject) in enumerate(zip(names, subjects, strict=True), start=1):
            add_section(Section("advice_item", f"{number}. {name}", subject=subject))
        slots["N"] = slots["n"] = str(len(names))
        return variant
    types = [] if variant == "topics" else \
        picker.take(count, frozenset({"topic", "list", "review", "cost"}), head=shape.head, avoid=headings)
    if len(types) >= 3:
        for number, keyword in enumerate(types, start=1):
            related = picker.shapes[keyword]
            add_section(Section("item", f"{number}. {heading_for(related)}",
                                subject=_shorten(subject_phrase(related), shape)))
        slots["N"] = slots["n"] = str(len(types))
        return "types"
    others = picker.take(max(0, min(count, 4) - len(types)), _NOUN_KINDS - {"question"}, avoid=headings)
    for keyword in [*types, *others]:
        related = picker.shapes[keyword]
        add_section(Section("item", heading_for(related),
                            subject=_shorten(subject_phrase(related), shape)))
    return variant
