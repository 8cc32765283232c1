"""The offline writer's template data loads, and a broken template fails the load, not an article."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from ai.local_ideas import CONTENT_TYPES
from ai.local_templates import (
    SENTENCE_ROLES,
    ContentType,
    Sentences,
    content_types,
    english,
    faq_questions,
    keyword_lists,
    section_plans,
    sentence_templates,
)

GUIDE = {"doctype": "guide", "words": 1500, "description": ["A guide to {s}."], "titles": {"general": ["{K} in {Y}"]},
         "sections": [{"role": f"part{n}", "h2": [f"Part {n} of {{C}}"]} for n in range(3)],
         "faq": ["Questions About {C}"], "conclusion": ["The Bottom Line on {C}"]}


def test_the_data_files_load_once_into_typed_structures() -> None:
    types = content_types()
    assert tuple(types) == CONTENT_TYPES == ("guide", "how-to", "listicle", "comparison", "review", "checklist",
                                             "answer", "troubleshooting")
    assert all(isinstance(t, ContentType) and len(t.sections) >= 3 for t in types.values())
    assert set(sentence_templates()) >= SENTENCE_ROLES
    assert len(faq_questions()) >= 5 and "planning" == english().doubled_gerunds["plan"]
    assert "how" in keyword_lists().question_words and "answer" in section_plans()
    assert content_types() is types  # cached: read from disk once per process


def test_a_well_formed_content_type_validates() -> None:
    assert ContentType.model_validate(GUIDE).titles == {"general": ("{K} in {Y}",)}


@pytest.mark.parametrize(("change", "message"), [
    ({"titles": {"general": ["{S} for {Audience}"]}}, "unknown slot(s) audience"),
    ({"description": ["A guide to [s|t."]}, "not closed"),
    ({"description": ["A guide to [a [b|c]]."]}, "not closed, or nested"),
    ({"description": ["A guide to {s."]}, "{slot} is not closed"),
    ({"titles": {"general": []}}, "at least 1 item"),
    ({"sections": GUIDE["sections"][:2]}, "at least 3 items"),
    ({"sections": [*GUIDE["sections"], {"role": "steps", "count": [4, 5], "headings": ["Step {G}"]}]},
     "fewer step headings"),
    ({"sections": [*GUIDE["sections"], {"role": "mistakes"}]}, "has no h2 template"),
    ({"colour": "red"}, "Extra inputs are not permitted"),
])
def test_a_broken_template_is_refused_with_its_location(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ContentType.model_validate({**GUIDE, **change})


def test_every_sentence_role_the_writer_uses_must_be_there() -> None:
    roles = {role: ("About {sub}.",) for role in SENTENCE_ROLES - {"bullet"}}  # recap, faq_why, ... named in code
    with pytest.raises(ValidationError, match="missing sentence role"):
        TypeAdapter(Sentences).validate_python(roles)
    with pytest.raises(ValidationError, match="unknown slot"):
        TypeAdapter(Sentences).validate_python({**roles, "bullet": ("Use {topc}.",)})
