"""The offline writer's template data (`ai/data/*.json`), read once and checked on the way in.

The templates are data, so they can be edited without touching the code that fills them. A slot
name the code never fills, or an unclosed `[a|b]`, would otherwise surface as a KeyError (or a
stray bracket) inside one article among thousands; here it fails the first load, naming the file
and the template.

Template syntax: `[a|b|c]` picks one alternative, `{slot}` is replaced by a value and `{Slot}` by
the value capitalised. Which slots a template may use depends on where it is filled (below).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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


# {t} the topic, {s} the idea's focus subject, {s2} a second subject, {y} the year, {n} the H2 count;
# descriptions: {a} and {b} two of the outline's sections. Sentences: {sub} what the paragraph is about,
# {parent} its H2, {subs} its H3s, {topic} the cluster, {kw} a target keyword, {other} another section,
# {doctype} the kind of article, {first}, {middle}, {last} three of its H2s.
TitleTemplate = Annotated[str, AfterValidator(_template("t", "s", "s2", "y", "n"))]
HeadingTemplate = Annotated[str, AfterValidator(_template("t", "s", "s2", "y"))]
DescriptionTemplate = Annotated[str, AfterValidator(_template("s", "t", "a", "b"))]
SentenceTemplate = Annotated[str, AfterValidator(_template("sub", "parent", "subs", "topic", "kw", "other", "doctype",
                                                           "first", "middle", "last"))]
QuestionTemplate = Annotated[str, AfterValidator(_template("topic", "kw"))]

# the sentence roles the article writer asks for (`ai.local_articles`)
SENTENCE_ROLES = frozenset({"definition", "reason", "explanation", "tip", "example", "caution", "comparison",
                            "transition", "takeaway", "overview", "hook", "problem", "promise", "roadmap", "answer",
                            "detail", "recap", "encourage", "next", "bullet"})


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutlineRow(_Data):
    """An H2 template and the pool its H3s are drawn from."""

    h2: HeadingTemplate
    h3s: tuple[HeadingTemplate, ...] = Field(min_length=1)


class ContentType(_Data):
    """Everything the writer knows about one kind of article (guide, how-to, ...)."""

    doctype: str = Field(min_length=1, description='How the article names itself in prose ("this walkthrough").')
    description: DescriptionTemplate
    titles: tuple[TitleTemplate, ...] = Field(min_length=1)
    outline: tuple[OutlineRow, ...] = Field(min_length=6, description="In reading order; 6-8 rows are picked.")


class English(_Data):
    """Word lists the phrase helpers (`ai.local_text`) need to bend keywords and headings into sentences."""

    question_starts: frozenset[str]
    imperatives: frozenset[str]
    doubled_gerunds: dict[str, str] = Field(description='Verbs that double their last letter ("plan": "planning").')


def _roles(sentences: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    missing = sorted(SENTENCE_ROLES - set(sentences))
    if missing:
        raise ValueError(f"missing sentence role(s): {', '.join(missing)}")
    return sentences


Sentences = Annotated[dict[str, Annotated[tuple[SentenceTemplate, ...], Field(min_length=1)]],
                      AfterValidator(_roles)]


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
    """Content type name -> its templates, in the file's order (the order ideas sample from)."""
    return _load("content_types.json", dict[str, ContentType])


@cache
def sentence_templates() -> dict[str, tuple[str, ...]]:
    """Sentence role ("definition", "tip", ...) -> its templates."""
    return _load("sentences.json", Sentences)


@cache
def faq_questions() -> tuple[str, ...]:
    """Generic FAQ questions about {topic} or a target keyword {kw}."""
    return _load("faq_questions.json", tuple[QuestionTemplate, ...])


@cache
def english() -> English:
    """The word lists of `English`."""
    return _load("english.json", English)
