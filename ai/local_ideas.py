"""Offline article ideas: titles, outlines and descriptions for a cluster, from the content-type templates.

A cluster gets one idea per search intent among its keywords (`intents`), each
targeting one keyword, of different content types (`ai/data/content_types.json`: guide, how-to,
...): two articles competing for one intent would cannibalize each other. Each idea is seeded by
its cluster, type, title template and keyword, so the same cluster always yields the same ideas,
and a taken title just moves on to the next template.
"""

from __future__ import annotations

import random
from datetime import date

from ai.base import ClusterIn, IdeaOut, InvalidAIOutput, OutlineSection
from ai.intents import intents
from ai.local_cluster import title_case
from ai.local_templates import content_types
from ai.local_text import display_lower, fill, keyword_subject, seeded, sentence_subject

CONTENT_TYPES: tuple[str, ...] = tuple(content_types())  # read (and checked) when the provider is imported
YEAR = date.today().year


def _subjects(keywords: tuple[str, ...], topic: str) -> list[str]:
    """Noun-phrase forms of the cluster's keywords (the topic when none qualifies)."""
    subjects = [s for s in (keyword_subject(k, gerunds=False) for k in keywords) if s]
    return list(dict.fromkeys(subjects)) or [topic.lower()]


def pick_outline(kind: str, rng: random.Random, slots: dict[str, str]) -> tuple[OutlineSection, ...]:
    """6-8 H2s from the type's pool (kept in their logical order), each with 2-3 H3s."""
    pool = content_types()[kind].outline
    picked = sorted(rng.sample(range(len(pool)), k=min(len(pool), rng.randint(6, 8))))
    sections = []
    steps = 0
    for number, index in enumerate(picked, start=1):
        h3_pool = pool[index].h3s
        h3s = sorted(rng.sample(range(len(h3_pool)), k=min(len(h3_pool), rng.randint(2, 3))))
        heading = fill(pool[index].h2, rng, slots)
        if kind == "listicle":
            heading = f"{number}. {heading}"
        elif heading.startswith("Step: "):  # steps are numbered after sampling so they never skip
            steps += 1
            heading = f"Step {steps}: {heading[6:]}"
        sections.append(OutlineSection(heading, tuple(fill(h3_pool[i], rng, slots) for i in h3s)))
    return tuple(sections)


def _idea(cluster: ClusterIn, kind: str, template: str, target: str, subjects: list[str]) -> IdeaOut:
    """One idea from a title template and the keyword it targets (everything else seeded from them)."""
    rng = seeded("idea", cluster.name, kind, template, target)
    subject = keyword_subject(target, gerunds=False) or subjects[0]
    second = next((s for s in subjects if s != subject), cluster.name.lower())
    if second == subject:
        second = cluster.name.lower()
    slots = {"t": title_case(cluster.name.lower()), "s": title_case(subject), "s2": title_case(second), "y": str(YEAR)}
    sections = pick_outline(kind, rng, slots)
    title = fill(template, rng, {**slots, "n": str(len(sections))})
    others = [k for k in cluster.keywords if k != target]
    extra = rng.sample(others, k=min(len(others), rng.randint(2, 4)))
    h2_subjects = [sentence_subject(s.h2) for s in sections]
    description = fill(content_types()[kind].description, rng,
                       {"s": subject, "t": display_lower(cluster.name), "a": h2_subjects[1], "b": h2_subjects[-2]})
    keywords = tuple(dict.fromkeys([target, *extra]))
    return IdeaOut(title, kind, keywords, sections, description, primary_keyword=target)


def generate_ideas(cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
    """One idea per intent of the cluster, of different content types, with titles new to the site."""
    rng = seeded("ideas", cluster.name, *sorted(cluster.keywords))  # content, not ids: same input, same ideas
    subjects = _subjects(cluster.keywords, cluster.name)
    targets = intents(cluster.keywords) or [cluster.name.lower()]
    kinds = rng.sample(CONTENT_TYPES, k=len(CONTENT_TYPES))
    taken = {t.casefold() for t in taken_titles}
    ideas: list[IdeaOut] = []
    for number, target in enumerate(targets):
        for attempt in range(len(kinds) * 12):
            kind = kinds[(number + attempt) % len(kinds)]
            templates = content_types()[kind].titles
            template = templates[(attempt // len(kinds) + rng.randrange(len(templates))) % len(templates)]
            idea = _idea(cluster, kind, template, target, subjects)
            if idea.title.casefold() not in taken:
                taken.add(idea.title.casefold())
                ideas.append(idea)
                break
    if not ideas:
        raise InvalidAIOutput(f"could not find an untaken title for cluster {cluster.name!r}")
    return ideas
