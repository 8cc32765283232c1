"""The offline writer's data (`ai/data/*.json`), read once and checked on the way in.

The templates and word lists are data, so they can be edited without touching the code that uses
them. A slot name the code never fills, an unclosed `[a|b]`, or a section that asks for a sentence
role no bank provides would otherwise surface as a KeyError (or a stray bracket) inside one article
among thousands; here it fails the first load, naming the file and the template.

Template syntax: `[a|b|c]` picks one alternative, `{slot}` is replaced by a value and `{Slot}` by the
value capitalised (in headings: title-cased). Which slots a template may use depends on where it is
filled (below).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

ALTERNATIVES = re.compile(r"\[([^\[\]]*)\]")
SLOT = re.compile(r"\{(\w+)\}")


def _template(*slots: str) -> Callable[[str], str]:
    """A check that a template is not blank, uses only `slots` and pairs up its brackets."""
    allowed = frozenset(slots)

    def check(text: str) -> str:
        if not text.strip():
            raise ValueError("empty template")
        if re.search(r"[\[\]]", ALTERNATIVES.sub("", text)):
            raise ValueError("an [a|b] alternative is not closed, or nested")
        if re.search(r"[{}]", SLOT.sub("", text)):
            raise ValueError("a {slot} is not closed, or not a single word")
        unknown = sorted({name.lower() for name in SLOT.findall(text)} - allowed)
        if unknown:
            raise ValueError(f"unknown slot(s) {', '.join(unknown)}; here the slots are {', '.join(sorted(allowed))}")
        return text

    return check


# Titles and headings: {k} the keyword, {q} the question as asked, {r} the question put to the reader,
# {s} the subject, {c} the subject as a heading names it (plural where countable), {ct} the subject of a
# list of tips without "tips", {l} what a list is of, in full ("cheap trail running shoes under 100"),
# {p} the problem, {a} and {b} the options compared, {act} the procedure as a verb phrase, {g} as a gerund
# phrase, {w} a procedure named without a verb ("backpacking tarp setup"), {n} the number of list items,
# {y} the run's year.
HEADING_SLOTS = ("k", "q", "r", "s", "c", "ct", "l", "p", "a", "b", "act", "g", "w", "n", "y")
# Sentences: {sub} what the section is about, {ref} the article's subject (not always in the keyword's
# words), {kw} the primary keyword, {q} its question, {f1} {f2} {f3} aspects it depends on, {fs} two or three
# of them listed, {r1} {r2} related subjects (other keywords of the cluster), {a} {b} the options compared,
# {ger} the procedure, {c} the subject, {doctype} the kind of article, {contents} what the article's sections
# cover, {parts} what the section's H3s are about.
SENTENCE_SLOTS = ("sub", "ref", "kw", "q", "f1", "f2", "f3", "fs", "r1", "r2", "a", "b", "ger", "c", "doctype",
                  "contents", "parts")
HeadingTemplate = Annotated[str, AfterValidator(_template(*HEADING_SLOTS))]
TitleTemplate = HeadingTemplate
DescriptionTemplate = Annotated[str, AfterValidator(_template(*HEADING_SLOTS))]
SentenceTemplate = Annotated[str, AfterValidator(_template(*SENTENCE_SLOTS))]
QuestionTemplate = Annotated[str, AfterValidator(_template("c", "a", "b"))]

# the sentence roles the article writer asks for itself (`ai.local_articles`); sections.json names the rest
SENTENCE_ROLES = frozenset({"intro_hook", "intro_question", "intro_compare", "intro_problem", "intro_review",
                            "intro_checklist", "intro_scope",
                            "intro_honest", "answer_amount", "answer_time", "answer_yesno", "answer_why",
                            "answer_what", "short_amount", "short_time", "short_yesno", "short_why", "short_what",
                            "faq_more", "recap", "encourage", "bullet", "faq_amount", "faq_time", "faq_yesno",
                            "faq_why", "faq_what", "faq_how", "faq_who", "faq_where"})
ANSWER = "ANSWER"  # in a section's plan: the answer bank that fits the question ("answer_amount", ...)
ANSWER_OPEN = "ANSWER_OPEN"  # ... and the bank of its opening sentence ("short_amount", ...)
SPECIAL_ROLES = frozenset({"related", "items", "steps"})  # sections built from keywords or step templates


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SectionRow(_Data):
    """One section of a content type's outline, in reading order."""

    role: str = Field(description='What the section does ("answer", "mistakes"); `related`, `items` and `steps` '
                      "are built from the cluster's keywords or from `steps`.")
    h2: tuple[HeadingTemplate, ...] = ()
    h3: Literal["aspects"] | None = Field(None, description='"aspects": H3s on what the answer or the problem '
                                          'depends on ("Sourdough Bread and Temperature").')
    count: tuple[int, int] | None = Field(None, description="How many sections a `related`, `items` or `steps` "
                                          "row becomes (min, max).")
    headings: tuple[HeadingTemplate, ...] = Field((), description="The steps' headings, in order; for `items`, "
                                                  "the headings used when the cluster names too few items.")
    only: frozenset[str] = Field(frozenset(), description="Only for subjects of these categories.")
    only_variant: frozenset[str] = Field(frozenset(), description="Only for these title variants.")
    skip: frozenset[str] = Field(frozenset(), description="Not for these title variants.")
    optional: bool = False

    @model_validator(mode="after")
    def _complete(self) -> SectionRow:
        if self.role in SPECIAL_ROLES:
            if self.count is None:
                raise ValueError(f"a {self.role!r} row needs a count")
            if self.role == "steps" and len(self.headings) < self.count[1]:
                raise ValueError("fewer step headings than the most steps asked for")
        elif not self.h2:
            raise ValueError(f"section {self.role!r} has no h2 template")
        return self


class ContentType(_Data):
    """Everything the writer knows about one kind of article (guide, how-to, ...)."""

    doctype: str = Field(min_length=1, description='How the article names itself in prose ("this walkthrough").')
    words: int = Field(ge=600, le=4000, description="The article's length, roughly.")
    description: tuple[DescriptionTemplate, ...] = Field(min_length=1)
    titles: dict[str, Annotated[tuple[TitleTemplate, ...], Field(min_length=1)]] = Field(
        min_length=1, description="Title variant (what kind of keyword) -> its templates, in order of preference.")
    sections: tuple[SectionRow, ...] = Field(min_length=3, description="In reading order.")
    faq: tuple[HeadingTemplate, ...] = Field(min_length=1)
    conclusion: tuple[HeadingTemplate, ...] = Field(min_length=1)


class ContextName(_Data):
    cased: str
    near: frozenset[str]


class English(_Data):
    """Word lists the phrase helpers (`ai.local_text`, `ai.local_case`) need."""

    question_starts: frozenset[str]
    imperatives: frozenset[str]
    doubled_gerunds: dict[str, str] = Field(description='Verbs that double their last letter ("plan": "planning").')
    names: tuple[str, ...] = Field(description="Acronyms, brands, places and other words (or phrases) whose casing is "
                                   "fixed wherever they appear: keywords arrive lowercase.")
    context_names: dict[str, ContextName] = Field(default_factory=dict, description="Words cased as a name only "
                                                  'near one of `near` ("abs" is ABS beside "keycaps").')


class KeywordLists(_Data):
    """Word lists that tell what a keyword asks for (`ai.local_keywords`): its kind and its subject."""

    question_words: frozenset[str]
    auxiliaries: frozenset[str]
    pronouns: dict[str, str] = Field(description='The asker\'s words as said to the reader ("my": "your").')
    measure_words: frozenset[str] = Field(description='What follows "how" in a question ("many", "long").')
    predicates: frozenset[str] = Field(description="Verbs and adjectives that end a question's subject.")
    how_to_verbs: frozenset[str] = Field(description="Verbs a keyword may start with to ask for a procedure.")
    verb_prefixes: frozenset[str] = Field(description='Words that make a verb of two ("potty train").')
    particles: frozenset[str] = Field(description='Words that belong to the verb, not its object ("dial in").')
    gerund_nouns: frozenset[str] = Field(description='Words in -ing that are nouns ("morning").')
    determiners: frozenset[str]
    determiners_gerund: frozenset[str] = Field(description="What follows a gerund that starts a procedure "
                                               '("crate training a puppy").')
    trailing_adverbs: frozenset[str] = Field(description='Words that end a procedure, not its object ("fast").')
    linking_verbs: frozenset[str] = Field(description='Verbs whose procedure is named whole ("staying productive").')
    problem_words: frozenset[str]
    clause_problem_words: frozenset[str] = Field(description='Problem words that make a clause ("not rising").')
    fix_words: frozenset[str]
    cause_words: frozenset[str]
    list_heads: frozenset[str] = Field(description='Plural head nouns that ask for a list ("ideas", "apps").')
    advice_heads: frozenset[str] = Field(description='List heads whose items are pieces of advice ("tips").')
    list_starts: frozenset[str]
    checklist_heads: frozenset[str]
    checklist_lists: frozenset[str] = Field(description='What "... list" must follow to ask for a checklist.')
    service_words: frozenset[str]
    cost_words: frozenset[str]
    procedure_tails: frozenset[str]
    review_words: frozenset[str]
    intent_fillers: frozenset[str] = Field(description='Words that only say "explain this" ("explained").')
    qualifier_words: frozenset[str] = Field(description='Words that start a qualifier ("for beginners").')
    compounds: tuple[str, ...] = Field(description='Phrases never split into subject and qualifier ("work from home").')
    mass_nouns: frozenset[str] = Field(description="Heads that take no plural and no article in a heading.")
    places: frozenset[str]
    categories: dict[str, frozenset[str]] = Field(description="Category -> head nouns, in the order they are tried.")
    attribute_heads: frozenset[str] = Field(description='Heads of keywords that name an aspect of their subject '
                                            '("grind size", "hydration"): what answers and causes depend on.')
    document_heads: frozenset[str] = Field(description='Heads of keywords that ask for a model document '
                                           '("reception timeline sample", "invitation wording").')
    choice_heads: frozenset[str] = Field(description='List heads of things one picks ("apps", "hotels"): their '
                                         "lists say how to choose.")
    generic_facets: dict[str, tuple[str, ...]] = Field(description="Category -> what any subject of it involves, "
                                                       "for sentences when the cluster names too few.")


class FaqQuestion(_Data):
    """A question any article of the right category may answer, and the bank its answer comes from."""

    q: QuestionTemplate
    a: str
    only: frozenset[str] = Field(frozenset(), description="Only for subjects of these categories.")
    except_: frozenset[str] = Field(frozenset(), alias="except", description="Not for these categories.")
    types: frozenset[str] = Field(frozenset(), description="Only in articles of these content types.")
    types_except: frozenset[str] = Field(frozenset(), description="Not in articles of these content types.")


def _roles(sentences: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    missing = sorted(SENTENCE_ROLES - set(sentences))
    if missing:
        raise ValueError(f"missing sentence role(s): {', '.join(missing)}")
    return sentences


Sentences = Annotated[dict[str, Annotated[tuple[SentenceTemplate, ...], Field(min_length=1)]],
                      AfterValidator(_roles)]


class SectionPlan(_Data):
    """How a section of one role is written: its paragraphs' sentence roles, the roles that extend it to
    its share of the words, and the bank of its list items, if it has a list."""

    topic: str = Field(description='What such a section covers, for the introduction ("the mistakes to avoid"); '
                       "empty for sections named after a related keyword.")
    paragraphs: tuple[tuple[str, ...], ...] = Field(min_length=1)
    extra: tuple[str, ...] = Field(min_length=1)
    per_h3: tuple[str, ...] = ()
    bullets: str | None = None


class TemplateDataError(ValueError):
    """A data file under ai/data/ is missing, not JSON, or does not fit its schema."""


T = TypeVar("T")


def _load(name: str, schema: type[T] | Any) -> T:
    """`ai/data/<name>` parsed with the stdlib and validated into `schema`."""
    try:
        raw = json.loads((resources.files("ai") / "data" / name).read_text(encoding="utf-8"))
        loaded: T = TypeAdapter(schema).validate_python(raw)
        return loaded
    except (OSError, ValueError, ValidationError) as exc:
        raise TemplateDataError(f"ai/data/{name}: {exc}") from exc


@cache
def content_types() -> dict[str, ContentType]:
    """Content type name -> its templates, in the file's order."""
    return _load("content_types.json", dict[str, ContentType])


@cache
def sentence_templates() -> dict[str, tuple[str, ...]]:
    """Sentence role ("answer_why", "tip", ...) -> its templates."""
    return _load("sentences.json", Sentences)


@cache
def section_plans() -> dict[str, SectionPlan]:
    """Section role -> how it is written; every sentence role it names must have a bank, and every section
    role of the content types (and the facet sections) a plan."""
    plans: dict[str, SectionPlan] = _load("sections.json", dict[str, SectionPlan])
    banks = set(sentence_templates()) | {ANSWER, ANSWER_OPEN}
    for role, plan in plans.items():
        named = {r for p in plan.paragraphs for r in p} | set(plan.extra) | set(plan.per_h3) | \
            ({plan.bullets} if plan.bullets else set())
        if named - banks:
            raise TemplateDataError(f"ai/data/sections.json: {role!r} names no sentence bank "
                                    f"{', '.join(sorted(named - banks))}")
    needed = {row.role for t in content_types().values() for row in t.sections} - SPECIAL_ROLES
    needed |= {"step", "item", "advice_item", "group", "facet", "facet_question", "facet_howto", "facet_compare",
               "facet_problem"}
    if needed - set(plans):
        raise TemplateDataError(f"ai/data/sections.json: no plan for {', '.join(sorted(needed - set(plans)))}")
    return plans


@cache
def faq_questions() -> tuple[FaqQuestion, ...]:
    """Questions about the subject {c} (or the options {a} and {b} compared) and the banks that answer them."""
    questions: tuple[FaqQuestion, ...] = _load("faq_questions.json", tuple[FaqQuestion, ...])
    unknown = sorted({q.a for q in questions} - set(sentence_templates()))
    if unknown:
        raise TemplateDataError(f"ai/data/faq_questions.json: no sentence bank {', '.join(unknown)}")
    return questions


@cache
def english() -> English:
    """The word lists of `English`."""
    return _load("english.json", English)


@cache
def keyword_lists() -> KeywordLists:
    """The word lists of `KeywordLists`."""
    return _load("keywords.json", KeywordLists)


@cache
def name_casing() -> dict[str, str]:
    """Lowercase word or phrase -> its fixed casing (`English.names`)."""
    return {name.casefold(): name for name in english().names}
