"""An idea's title and description, from its plan (`ai.local_plan`): the first of the content type's
templates that can be filled, reads well and is not taken by an earlier idea of the site."""

from __future__ import annotations

import random
import re

from ai.local_checks import title_problems
from ai.local_keywords import Shape
from ai.local_plan import Plan, fillable, tidy
from ai.local_templates import content_types, keyword_lists
from ai.local_text import fill, plural, slots_of


def choose_title(plan: Plan, taken: set[str], rng: random.Random) -> str | None:
    """The first of the variant's title templates (from a seeded start) that can be filled, reads well
    (`title_problems`) and is not taken."""
    spec = content_types()[plan.kind]
    templates = list(spec.titles[plan.variant])
    start = rng.randrange(len(templates))
    year = int(plan.slots["y"]) if "y" in plan.slots else None
    fallback = None
    for template in templates[start:] + templates[:start]:
        if not fillable(template, plan.slots) or (re.search(r"\b(?:to|of|for|with|on) \{K\}", template)
                                                   and not _reads_after_preposition(plan.shape)):
            continue
        title = tidy(fill(template, rng, plan.slots))
        if title.casefold() in taken:
            continue
        if title_problems(title, plan.shape.keyword, year):
            fallback = fallback or title
            continue
        return title
    return fallback


def _reads_after_preposition(shape: Shape) -> bool:
    """Whether the keyword reads as is after "a guide to": a plural, mass or -ing head, no intent word
    ("explained", "review") and no singular thing that would need an article."""
    lists = keyword_lists()
    words = shape.keyword.split()
    if set(words) & (lists.intent_fillers | lists.review_words | lists.cost_words | {"sample", "template"}):
        return False
    head = shape.head
    if shape.qualifier or len(words) > 4:
        return False  # "a beginner's guide to stretch and folds every 30 minutes"
    return plural(head) == head or head.endswith("ing")


def describe(plan: Plan, rng: random.Random) -> str:
    """The idea's description (the article's meta description), sentence-cased."""
    spec = content_types()[plan.kind]
    lower = {k: v for k, v in plan.slots.items() if k == k.lower()}
    usable = [t for t in spec.description if fillable(t, lower)] or ["A practical guide to {s}."]
    naming = [t for t in usable if slots_of(t) & {"k", "act", "r"}]  # the meta description names the keyword
    usable = naming or usable
    text = fill(rng.choice(usable), rng, lower)
    return tidy(text[:1].upper() + text[1:])
