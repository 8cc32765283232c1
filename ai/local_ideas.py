"""Offline article ideas: one per search intent of a cluster, each of the content type its keyword asks for.

A cluster's keywords are grouped by intent (`ai.intents.intents`); each intent's keyword becomes an
idea whose content type follows what the keyword asks (`ai.local_keywords`: a question gets an answer,
"X vs Y" a comparison, "best X" a list, ...), whose sections come from the cluster's related keywords
(`ai.local_plan`), and whose title is the first of its type's templates that reads well
(`ai.local_checks.title_problems`) and is not taken. The related keywords an idea covers follow its
primary keyword in `target_keywords`, so the article writer can rebuild the same plan. Everything is
seeded by the cluster and the keyword, so the same cluster always yields the same ideas.
"""

from __future__ import annotations

from ai.base import ClusterIn, IdeaOut, InvalidAIOutput, OutlineSection
from ai.intents import intents
from ai.local_plan import build_plan, content_type_for
from ai.local_templates import content_types
from ai.local_text import seeded
from ai.local_titles import choose_title, describe

CONTENT_TYPES: tuple[str, ...] = tuple(content_types())  # read (and checked) when the provider is imported


def generate_ideas(cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
    """One idea per intent of the cluster, each of the content type its keyword asks for, with titles new
    to the site."""
    targets = intents(cluster.keywords) or [cluster.name.lower()]
    taken = {t.casefold() for t in taken_titles}
    ideas: list[IdeaOut] = []
    for target in targets:
        kind = content_type_for(target)
        plan = build_plan(target, kind, cluster.name, [k for k in cluster.keywords if k != target], cluster.year)
        title = choose_title(plan, taken, seeded("title", cluster.name, target, kind))
        if title is None:
            continue
        taken.add(title.casefold())
        outline = tuple(OutlineSection(s.h2, s.h3s) for s in plan.sections)
        description = describe(plan, seeded("description", cluster.name, target, kind))
        ideas.append(IdeaOut(title, plan.kind, (target, *plan.used), outline, description, primary_keyword=target))
    if not ideas:
        raise InvalidAIOutput(f"could not find an untaken title for cluster {cluster.name!r}")
    return ideas
