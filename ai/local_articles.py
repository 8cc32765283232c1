"""Offline articles: a draft for an idea, written section by section from its plan and a template grammar.

The article writer rebuilds the idea's plan (`ai.local_plan`) from its primary keyword, content type,
cluster and related keywords, so it knows what each stored heading is for: the answer to a question,
a step, a list item, a related keyword, a set of mistakes... (a heading the plan does not know, such as
one an editor added, is written as a section about what the heading names). Each section's sentences
come from the banks its role names (`ai/data/sections.json`, `ai/data/sentences.json`), filled with
the section's subject and the cluster's related subjects, and seeded by (idea title, section,
paragraph), so the same idea always yields the same text.

SEO practice for the primary keyword: in the title, the first paragraph, one H2 and the meta
description, and not more than about once per 150 words; elsewhere the text names the subject other
ways (`Plan.refs`). The drafts are honest about being drafts: where the answer depends on the reader's
situation, or on facts the writer cannot know, they say what to check rather than invent figures.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from ai.article_render import Block, count_words, meta_description, meta_title, render_html, render_markdown, slugify
from ai.base import ArticleOut, IdeaIn, InvalidAIOutput
from ai.local_checks import count_phrase
from ai.local_keywords import normalise
from ai.local_plan import Plan, Section, build_plan, tidy
from ai.local_templates import ANSWER, ANSWER_OPEN, content_types, faq_questions, section_plans, sentence_templates
from ai.local_text import capitalise, cased, display_lower, fill, join_phrases, seeded, sentence_subject, slots_of

_ANSWERS = {"yes/no": "answer_yesno", "how many": "answer_amount", "how much": "answer_amount",
            "how long": "answer_time", "how often": "answer_time", "how far": "answer_time", "how soon": "answer_time",
            "when": "answer_time", "why": "answer_why"}
_FAQ_ANSWERS = {"yes/no": "faq_yesno", "how many": "faq_amount", "how much": "faq_amount", "how long": "faq_time",
                "how often": "faq_time", "how far": "faq_time", "when": "faq_time", "why": "faq_why",
                "how": "faq_how", "who": "faq_who", "where": "faq_where"}
_PARAGRAPH_WORDS = 120  # a paragraph grows to about this before the next one starts
_DETERMINERS = frozenset("a an the your my our their this these those its his her".split())


class _Writer:
    """Writes paragraphs sentence by sentence; avoids reusing a template inside one article."""

    def __init__(self, plan: Plan, title: str) -> None:
        self.plan = plan
        self.title = title
        self.used: set[str] = set()
        self.banks: dict[tuple[str, frozenset[str], bool], list[str]] = {}
        self.recent: list[str] = []  # this paragraph's templates: a reused template never repeats within one
        shape = plan.shape
        self.base = {"doctype": content_types()[plan.kind].doctype, "c": plan.slots["c"], "kw": self._keyword(),
                     "contents": _contents(plan)}
        if shape.kind == "question":
            self.base["q"] = capitalise(cased(shape.question)) + "?"
        if len(shape.options) == 2:
            self.base["a"], self.base["b"] = cased(shape.options[0]), cased(shape.options[1])
        if "g" in plan.slots:
            self.base["ger"] = plan.slots["g"]
        self.refs = list(plan.refs)
        self.buying = shape.kind in ("cost", "review", "comparison") or shape.category in ("product", "software") \
            or (plan.kind == "listicle" and plan.variant in ("things", "types"))

    def _keyword(self) -> str:
        shape = self.plan.shape
        return cased(shape.question if shape.kind == "question" else shape.keyword)

    def sentence(self, role: str, rng: random.Random, sub: str, need: frozenset[str] = frozenset(),
                 optional: bool = False, parts: str = "", order: list[str] | None = None) -> str:
        """One sentence of `role` about `sub`, preferring templates not yet used in this article; an
        `optional` sentence is left out ("") rather than repeat a template."""
        bank = self._templates(role, need, bool(parts))
        if not bank:
            return ""
        fresh = [t for t in bank if t not in self.used]
        if not fresh and optional:
            return ""
        unlike = [t for t in bank if t not in self.recent] or bank
        template = rng.choice(fresh or unlike)
        self.used.add(template)
        self.recent.append(template)
        wanted = slots_of(template)
        values = {**self.base, "sub": sub, "parts": parts}
        if wanted & {"f1", "f2", "f3", "fs"}:
            facets = [f for f in self.plan.facets if f.casefold() != sub.casefold()] or list(self.plan.facets)
            picked = [f for f in order if f in facets][:3] if order else rng.sample(facets, k=min(3, len(facets)))
            while len(picked) < 3:
                picked.append(picked[-1] if picked else sub)
            values.update(f1=picked[0], f2=picked[1], f3=picked[2], fs=join_phrases(picked[: 2 + rng.randrange(2)]))
        if wanted & {"r1", "r2"}:
            others = [r for r in self.plan.related if r.casefold() != sub.casefold()] or list(self.plan.facets)
            near = rng.sample(others, k=min(2, len(others)))
            values.update(r1=near[0], r2=near[-1])
        if "ref" in wanted:
            values["ref"] = rng.choice(self.refs)
        return fill(template, rng, values).strip()

    def _templates(self, role: str, need: frozenset[str], parts: bool) -> list[str]:
        """The role's templates this article can fill (those using `need`, if any do)."""
        key = (role, need, parts)
        if key not in self.banks:
            keys = self.base.keys() | {"sub", "ref", "f1", "f2", "f3", "fs", "r1", "r2"} | \
                ({"parts"} if parts else set())
            usable = [t for t in sentence_templates()[role] if slots_of(t) <= keys]
            self.banks[key] = [t for t in usable if need <= slots_of(t)] or usable
        return self.banks[key]

    def paragraph(self, key: tuple[object, ...], roles: tuple[str, ...], sub: str, target: int = 0,
                  extra: tuple[str, ...] = (), parts: str = "") -> str:
        """The roles' sentences in order, then `extra` ones until about `target` words. For things one
        buys (and their costs), practice tips give way to buying tips."""
        if self.buying:
            roles = tuple("buy_tip" if r in ("tip", "practice_tip") else r for r in roles)
            extra = tuple("buy_tip" if r in ("tip", "practice_tip") else r for r in extra)
        rng = seeded(self.title, *key)
        self.recent = []
        order = rng.sample(list(self.plan.facets), k=len(self.plan.facets))  # one paragraph, one order of aspects
        sentences = [self.sentence(self._bank(role), rng, sub, parts=parts, order=order) for role in roles]
        words = sum(count_words(s) for s in sentences)
        pool = list(extra) * 3
        rng.shuffle(pool)
        for role in pool:
            if words + 12 >= min(target, _PARAGRAPH_WORDS):
                break
            sentence = self.sentence(role, rng, sub, optional=True, order=order)
            sentences.append(sentence)
            words += count_words(sentence)
        return " ".join(s for s in sentences if s)

    def _bank(self, role: str) -> str:
        if role in (ANSWER, ANSWER_OPEN):
            bank = _ANSWERS.get(self.plan.shape.asks, "answer_what")
            return bank.replace("answer_", "short_") if role == ANSWER_OPEN else bank
        return role


def _contents(plan: Plan) -> str:
    """What the article's sections cover, for the introduction: "the short answer, what changes the answer
    and how to check it for your own situation"."""
    topics: list[str] = []
    for section in plan.sections:
        spec = section_plans().get(section.role)
        if section.h2.endswith("?"):
            continue
        topic = spec.topic if spec and spec.topic else display_lower(re.sub(r"^\d+\.\s*", "", section.h2))
        if topic and topic not in topics and len(topic.split()) <= 8:
            topics.append(topic)
    return join_phrases(topics[:4]) or plan.subject


def _section(writer: _Writer, section: Section, target: int, index: int, lists: int = 0) -> list[Block]:
    """A section's blocks: its H2, its paragraphs and H3s, and a list when its plan has one."""
    plan = section_plans().get(section.role) or section_plans()["facet"]
    key = (section.h2, index)
    sub = section.subject or sentence_subject(section.h2)
    rng = seeded(writer.title, *key, "shape")
    blocks = [Block("h2", section.h2)]
    paragraphs = list(plan.paragraphs)
    per_paragraph = max(40, target // max(1, len(paragraphs) + len(section.h3s)))
    subjects = section.h3_subjects or tuple(sentence_subject(h) for h in section.h3s)
    first = paragraphs[0] if subjects else tuple(r for r in paragraphs[0] if not r.endswith("_lead")) or plan.extra
    blocks.append(Block("p", writer.paragraph((*key, 0), first, sub, per_paragraph, plan.extra,
                                              parts=join_phrases(subjects))))
    for number, (h3, h3_sub) in enumerate(zip(section.h3s, subjects, strict=False)):
        roles = plan.per_h3 or plan.paragraphs[-1]
        blocks += [Block("h3", h3), Block("p", writer.paragraph((*key, "h3", number), roles, h3_sub,
                                                                  per_paragraph, plan.extra))]
    for number, roles in enumerate(paragraphs[1:], start=1):
        blocks.append(Block("p", writer.paragraph((*key, number), roles, sub, per_paragraph, plan.extra)))
    if plan.bullets and (writer.plan.kind == "checklist" or lists == 0 or rng.random() < 0.4):
        items = _bullets(writer, plan.bullets, section, sub, rng)
        if items:
            blocks.insert(2, Block("ul", items=items))
    written = sum(count_words(b.text) + count_words(" ".join(b.items)) for b in blocks[1:])
    extra = 0
    while written < target - 60 and extra < 3:
        text = writer.paragraph((*key, "more", extra), (), sub, min(_PARAGRAPH_WORDS, target - written), plan.extra)
        if not text:
            break
        blocks.append(Block("p", text))
        written += count_words(text)
        extra += 1
    return blocks


def _bullets(writer: _Writer, role: str, section: Section, sub: str, rng: random.Random) -> tuple[str, ...]:
    """Three to five list items, each about a different related subject."""
    subjects = list(section.h3_subjects) or []
    subjects += [f for f in writer.plan.related + writer.plan.facets if f not in subjects
                 and f.casefold() != sub.casefold()]
    count = min(len(subjects), 3 + rng.randrange(3))
    return tuple(writer.sentence(role, rng, subjects[i]) for i in range(count))


def _faq(writer: _Writer, plan: Plan, target: int) -> list[Block]:
    """Three to five questions: the cluster's questions first, then ones about the subject that fit its
    category; every answer comes from a bank that answers (or says what to check), never from the question."""
    rng = seeded(writer.title, "faq")
    pairs: list[tuple[str, str]] = []
    for question in plan.faq:
        asks = next((a for a in _FAQ_ANSWERS if question.casefold().startswith(a)), "")
        if question.split()[0].casefold() in ("is", "are", "do", "does", "can", "should", "will", "would"):
            asks = "yes/no"
        pairs.append((question, _FAQ_ANSWERS.get(asks, "faq_what")))
    category = plan.shape.category
    values = {"c": plan.slots["c"]}
    if len(plan.shape.options) == 2:
        values["a"], values["b"] = cased(plan.shape.options[0]), cased(plan.shape.options[1])
    generic = [q for q in faq_questions() if (not q.only or category in q.only) and category not in q.except_
               and (not q.types or plan.kind in q.types) and plan.kind not in q.types_except
               and slots_of(q.q) <= values.keys()]
    for generic_question in rng.sample(generic, k=len(generic)):
        text = tidy(fill(generic_question.q, rng, values))
        if count_phrase(text, plan.shape.keyword):
            continue  # the primary keyword has its places; an FAQ question is not one of them
        if text.casefold() not in {q.casefold() for q, _ in pairs}:
            pairs.append((text, generic_question.a))
    blocks = [Block("h2", plan.faq_heading)]
    chosen = pairs[: 3 + rng.randrange(3)]
    for index, (question, bank) in enumerate(chosen):
        answer = writer.paragraph(("faq", index), (bank, "faq_more"), plan.subject)
        blocks += [Block("h3", question), Block("p", answer)]
    return blocks


def _intro(writer: _Writer, plan: Plan) -> list[Block]:
    """Two paragraphs: the first names the primary keyword (and, for a question, answers it)."""
    opener = {"question": "intro_question", "comparison": "intro_compare", "problem": "intro_problem",
              "review": "intro_review", "checklist": "intro_checklist"}.get(plan.shape.kind, "intro_hook")
    rng = seeded(writer.title, "intro")
    first = writer.sentence(opener, rng, plan.subject, frozenset({"q"}) if opener == "intro_question"
                            else frozenset({"kw"}))
    if normalise(writer.base["kw"]) not in normalise(first) and "q" not in writer.base:
        first = writer.sentence("intro_hook", rng, plan.subject, frozenset({"kw"}))
    second = writer.sentence("intro_scope", rng, plan.subject)
    third = writer.paragraph(("intro", 1), ("intro_honest", "intro_honest"), plan.subject)
    return [Block("p", f"{first} {second}"), Block("p", third)]


def _conclusion(writer: _Writer, plan: Plan) -> list[Block]:
    return [Block("h2", plan.conclusion_heading),
            Block("p", writer.paragraph(("conclusion", 0), ("recap", "recap"), plan.subject)),
            Block("p", writer.paragraph(("conclusion", 1), ("encourage", "encourage"), plan.subject))]


def _sections(idea: IdeaIn, plan: Plan) -> list[Section]:
    """The idea's outline, each heading matched to the plan's section of that heading (its role and
    subject); a heading the plan does not know becomes a section about what it names."""
    known = {s.h2.casefold(): s for s in plan.sections}
    if not idea.outline:
        return list(plan.sections)
    sections = []
    for outline in idea.outline:
        match = known.get(outline.h2.casefold())
        if match is None:
            sections.append(Section("facet", outline.h2, outline.h3s, subject=sentence_subject(outline.h2)))
        else:
            subjects = match.h3_subjects if match.h3s == outline.h3s else ()
            sections.append(Section(match.role, outline.h2, outline.h3s, match.subject, subjects))
    return sections


def _cap_density(blocks: list[Block], plan: Plan) -> list[Block]:
    """At most one primary keyword per 150 words: beyond that, later mentions in paragraphs and list
    items name the subject another way. The title, the first paragraph and headings keep theirs."""
    keyword = normalise(plan.shape.keyword)
    words = sum(count_words(b.text) + count_words(" ".join(b.items)) for b in blocks)
    allowed = max(1, words // 150)
    total = sum(count_phrase(b.text + " " + " ".join(b.items), keyword) for b in blocks)
    if total <= allowed or not plan.refs:
        return blocks
    refs = _ref_cycle(plan)
    out = list(blocks)
    first_paragraph = next(i for i, b in enumerate(out) if b.kind == "p")
    for index in range(len(out) - 1, first_paragraph, -1):
        block = out[index]
        if block.kind not in ("p", "ul"):
            continue
        texts = list(block.items) if block.kind == "ul" else [block.text]
        for position in range(len(texts) - 1, -1, -1):
            while total > allowed and count_phrase(texts[position], keyword):
                texts[position] = _replace_last(texts[position], keyword, next(refs))
                total -= 1
        out[index] = Block(block.kind, "" if block.kind == "ul" else texts[0],
                           tuple(texts) if block.kind == "ul" else ())
        if total <= allowed:
            break
    return out


def _ref_cycle(plan: Plan) -> Iterator[str]:
    while True:
        yield from plan.refs


def _replace_last(text: str, keyword: str, ref: str) -> str:
    """`text` with its last mention of `keyword` replaced by `ref` (its own determiner dropped after one)."""
    words = keyword.split()
    pattern = re.compile(r"(?<![\w'])" + r"\W+".join(re.escape(w) for w in words) + r"(?![\w'])", re.IGNORECASE)
    matches = list(pattern.finditer(text))
    if not matches:
        return text
    match = matches[-1]
    before = text[: match.start()]
    previous = before.rstrip().rsplit(" ", 1)[-1].casefold() if before.strip() else ""
    replacement = ref
    if previous in _DETERMINERS and ref.split(" ", 1)[0] in _DETERMINERS and " " in ref:
        replacement = ref.split(" ", 1)[1]
    if not before.strip() or before.rstrip().endswith((".", "?", "!", ":")):
        replacement = capitalise(replacement)
    return before + replacement + text[match.end() :]


def generate_content(idea: IdeaIn) -> ArticleOut:
    """A draft of the idea's content type: introduction, the outline's sections, FAQ and conclusion."""
    title = " ".join(idea.title.split())
    if not title:
        raise InvalidAIOutput("idea has no title")
    kind = idea.content_type if idea.content_type in content_types() else "guide"
    primary = idea.target_keywords[0] if idea.target_keywords else normalise(re.split(r"[:?]", title)[0])
    plan = build_plan(primary, kind, idea.cluster_name, list(idea.target_keywords[1:]))
    writer = _Writer(plan, title)
    sections = _sections(idea, plan)
    spec = content_types()[kind]
    intro = _intro(writer, plan)
    faq_share = 160
    conclusion = _conclusion(writer, plan)
    budget = spec.words - count_words(title) - sum(count_words(b.text) for b in intro + conclusion) - faq_share
    weights = [1.0 + 0.5 * len(s.h3s) for s in sections]
    body: list[Block] = []
    for index, (section, weight) in enumerate(zip(sections, weights, strict=True)):
        share = int(budget * weight / max(1.0, sum(weights[index:])))
        blocks = _section(writer, section, share, index, sum(1 for b in body if b.kind == "ul"))
        body += blocks
        budget -= sum(count_words(b.text) + count_words(" ".join(b.items)) for b in blocks)
    faq = _faq(writer, plan, faq_share)
    blocks = _cap_density([Block("h1", title), *intro, *body, *faq, *conclusion], plan)
    markdown = render_markdown(blocks)
    first_paragraph = next(b.text for b in blocks if b.kind == "p")
    return ArticleOut(
        title=title,
        meta_title=meta_title(title),
        meta_description=meta_description(idea.description, first_paragraph),
        slug=slugify(title),
        html=render_html(blocks),
        markdown=markdown,
        word_count=count_words(markdown),
        sections=tuple(b.text for b in blocks if b.kind == "h2"),
    )
