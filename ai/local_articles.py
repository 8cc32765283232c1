"""Offline articles: a ~2,500-word article for an idea, written sentence by sentence from a template grammar.

Every sentence comes from a role-specific template ("definition", "tip", "caution", ...;
`ai/data/sentences.json`) whose `[a|b|c]` alternatives and `{slot}`s are filled from the idea's
keywords and the current heading, with the choice seeded by (idea title, section, paragraph
index). Rich alternatives plus heading-specific slots keep two articles from sharing sentences,
while the same idea always yields the same text.
"""

from __future__ import annotations

import random

from ai.article_render import (
    Block,
    count_words,
    meta_description,
    meta_title,
    render_html,
    render_markdown,
    slugify,
)
from ai.base import ArticleOut, IdeaIn, InvalidAIOutput, OutlineSection
from ai.local_cluster import title_case
from ai.local_ideas import YEAR, pick_outline
from ai.local_templates import content_types, faq_questions, sentence_templates
from ai.local_text import (
    display_lower,
    fill,
    join_phrases,
    keyword_question,
    keyword_subject,
    seeded,
    sentence_subject,
    subject_of,
)

TARGET_WORDS = 2500
_BODY_FILLERS = ("explanation", "tip", "example", "caution", "comparison", "reason", "explanation", "tip")
_LEAD_FILLERS = ("reason", "explanation")
_OPENERS = ("definition", "definition", "transition")


class _Writer:
    """Writes paragraphs sentence by sentence against a running word budget.

    Each paragraph draws from its own seed (idea title, section, paragraph index), and the
    writer avoids reusing a template inside one article so the prose does not repeat itself.
    """

    def __init__(self, title: str, base: dict[str, str], keywords: list[str], others: list[str]) -> None:
        self.title = title
        self.base = base
        self.keywords = keywords
        self.others = others
        self.used: set[str] = set()

    def sentence(self, role: str, rng: random.Random, slots: dict[str, str]) -> str:
        """One sentence of `role`, preferring templates not yet used in this article."""
        bank = sentence_templates()[role]
        fresh = [t for t in bank if t not in self.used] or list(bank)
        template = rng.choice(fresh)
        self.used.add(template)
        keywords = [k for k in self.keywords if k != slots.get("sub")] or self.keywords
        others = [o for o in self.others if o not in (slots.get("sub"), slots.get("parent"))] or self.others
        values = {**self.base, "kw": rng.choice(keywords), "other": rng.choice(others), **slots}
        return fill(template, rng, values)

    def paragraph(self, key: tuple[object, ...], roles: tuple[str, ...], slots: dict[str, str],
                  target: int = 0, fillers: tuple[str, ...] = (), closing: str | None = None) -> str:
        """Fixed opening roles, then shuffled fillers until ~`target` words, then a closer."""
        rng = seeded(self.title, *key)
        sentences = [self.sentence(role, rng, slots) for role in roles]
        pool = rng.sample(fillers, k=len(fillers)) if fillers else []
        reserve = 20 if closing else 0
        for role in pool:
            if count_words(" ".join(sentences)) + 10 >= target - reserve:
                break
            sentences.append(self.sentence(role, rng, slots))
        if closing:
            sentences.append(self.sentence(closing, rng, slots))
        return " ".join(sentences)


def _faq(idea: IdeaIn, writer: _Writer, topic: str) -> list[Block]:
    """3-5 questions: question-shaped target keywords first, then seeded generic ones."""
    rng = seeded(idea.title, "faq")
    questions = [q for q in (keyword_question(k) for k in idea.target_keywords) if q][:2]
    pairs = [(q, topic) for q in questions]
    generic = faq_questions()
    for template in rng.sample(generic, k=len(generic)):
        subject = rng.choice(writer.keywords) if "{kw}" in template else topic
        question = fill(template, rng, {"topic": topic, "kw": subject})
        if question.casefold() not in {q.casefold() for q, _ in pairs}:
            pairs.append((question, subject))
    blocks = [Block("h2", "Frequently Asked Questions")]
    for index, (question, subject) in enumerate(pairs[: 3 + rng.randrange(3)]):
        answer = writer.paragraph(("faq", index), ("answer", "detail"), {"sub": subject, "parent": subject})
        blocks += [Block("h3", question), Block("p", answer)]
    return blocks


def _intro_and_conclusion(writer: _Writer, subjects: list[str]) -> tuple[list[Block], list[Block]]:
    """The fixed-shape opening and closing paragraphs."""
    slots = {"sub": subjects[0], "parent": subjects[0]}
    intro = [Block("p", writer.paragraph(("intro", 0), ("hook", "problem"), slots)),
             Block("p", writer.paragraph(("intro", 1), ("promise", "roadmap"), slots))]
    conclusion = [Block("h2", "Conclusion"),
                  Block("p", writer.paragraph(("conclusion", 0), ("recap", "recap"), slots)),
                  Block("p", writer.paragraph(("conclusion", 1), ("encourage", "next"), slots))]
    return intro, conclusion


def _body(idea: IdeaIn, outline: tuple[OutlineSection, ...], writer: _Writer, budget: int) -> list[Block]:
    """The outline's sections sharing `budget` words by weight (H2 lead 0.5, H3 paragraph 1).

    Targets are recomputed from what is left after every paragraph, so overshoot in one
    paragraph is absorbed by the next ones and the article lands near the budget.
    """
    lists_rng = seeded(idea.title, "lists")
    weight = sum(0.5 + max(1, len(s.h3s)) for s in outline)
    blocks: list[Block] = []
    for section in outline:
        parent = sentence_subject(section.h2)
        h3s = section.h3s or (section.h2,)
        subjects = [sentence_subject(h) for h in h3s]
        slots = {"parent": parent, "subs": join_phrases(subjects), "sub": subjects[0]}
        lead = writer.paragraph((section.h2, "lead"), ("overview",), slots,
                                int(budget / weight * 0.5), _LEAD_FILLERS)
        blocks += [Block("h2", section.h2), Block("p", lead)]
        budget -= count_words(lead)
        weight -= 0.5
        if idea.content_type == "checklist" or lists_rng.random() < 0.5:
            items = _bullets(idea, section.h2, [parent, *subjects], writer)
            blocks.append(Block("ul", items=items))
            budget -= count_words(" ".join(items))
        for h3, subject in zip(h3s, subjects, strict=True):
            if section.h3s:
                blocks.append(Block("h3", h3))
            target = budget / weight
            parts = max(1, round(target / 130))  # long shares become several ~130-word paragraphs
            opener = seeded(idea.title, section.h2, h3).choice(_OPENERS)
            for part in range(parts):
                closing = "takeaway" if part == parts - 1 and target >= 60 else None
                text = writer.paragraph((section.h2, h3, part), ("transition" if part else opener,),
                                        {**slots, "sub": subject}, int(target / parts), _BODY_FILLERS, closing)
                blocks.append(Block("p", text))
                budget -= count_words(text)
            weight -= 1
    return blocks


def _bullets(idea: IdeaIn, h2: str, subjects: list[str], writer: _Writer) -> tuple[str, ...]:
    """A short list of action points for a section, one subject per item."""
    rng = seeded(idea.title, h2, "bullets")
    count = min(len(subjects) + 1, 3 + rng.randrange(2))
    return tuple(writer.sentence("bullet", rng, {"sub": subjects[i % len(subjects)]}) for i in range(count))


def _block_words(blocks: list[Block]) -> int:
    """Words in a run of blocks, list items included."""
    return sum(count_words(b.text) + count_words(" ".join(b.items)) for b in blocks)


def generate_content(idea: IdeaIn) -> ArticleOut:
    """A ~2,500-word article with introduction, the outline's sections, FAQ and conclusion."""
    title = " ".join(idea.title.split())
    if not title:
        raise InvalidAIOutput("idea has no title")
    kind = idea.content_type if idea.content_type in content_types() else "guide"
    keywords = list(dict.fromkeys(s for s in map(keyword_subject, idea.target_keywords) if s))
    topic = display_lower(idea.cluster_name) if idea.cluster_name.strip() else (keywords or [subject_of(title)])[0]
    keywords = keywords or [topic]
    sections = idea.outline or pick_outline("guide", seeded(title, "outline"), {
        "t": title_case(topic), "s": title_case(keywords[0]), "s2": title_case(keywords[-1]), "y": str(YEAR)})
    h2s = [sentence_subject(s.h2) for s in sections]
    others = list(dict.fromkeys(h2s + [sentence_subject(h) for s in sections for h in s.h3s]))
    base = {"topic": topic, "doctype": content_types()[kind].doctype, "first": h2s[0], "middle": h2s[len(h2s) // 2],
            "last": h2s[-1]}
    writer = _Writer(title, base, keywords, others)
    intro, conclusion = _intro_and_conclusion(writer, keywords)
    faq = _faq(idea, writer, topic)
    headings = count_words(title) + sum(count_words(s.h2) + count_words(" ".join(s.h3s)) for s in sections)
    budget = TARGET_WORDS - headings - _block_words(intro + faq + conclusion)
    blocks = [Block("h1", title), *intro, *_body(idea, sections, writer, budget), *faq, *conclusion]
    markdown = render_markdown(blocks)
    return ArticleOut(
        title=title,
        meta_title=meta_title(title),
        meta_description=meta_description(idea.description, intro[0].text),
        slug=slugify(title),
        html=render_html(blocks),
        markdown=markdown,
        word_count=count_words(markdown),
        sections=tuple(b.text for b in blocks if b.kind == "h2"),
    )
