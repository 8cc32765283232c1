"""Stage 2: clusters -> content ideas (GenerateIdeas). Seed query: status='new' without ideas, or reopened.

The titles shown to the AI as taken are those the site had when its active run started, not the
ones this run's other batches wrote a moment ago: what a batch sees then does not depend on which
batches ran first, and the same input gives the same ideas. Should two of the run's clusters still
come up with one title, the later writer keeps its idea under the title with its cluster's name.

One idea per search intent, whatever the provider:
- a cluster is shown only the keywords whose intent none of its ideas targets yet (`ai.intents.intent_key`)
  and that joined it after its latest idea was made (those before were shown then), so a cluster that
  stage 1 reopened because new keywords joined it gets ideas for what is new in it and nothing else; a
  cluster with nothing new gets no AI call;
- with sentence embeddings (`ai.embeddings`), what *means* the same is covered too (cosine ≥
  `NEAR_DUPLICATE`): a keyword is not shown when an earlier keyword of its cluster, a keyword of an
  earlier cluster of the site (a smaller id: that cluster's idea covers it), or an idea the site had
  before the run already asks for it; and a new idea is dropped when its title or its keyword means
  what an idea the site had before the run, or one written earlier in the batch, says. Each drop is
  in the run log with the reason. Only what existed before the run and the batch's own clusters
  count, so the outcome does not depend on which batches ran first.
The simulated provider (`fixed_workload`) is a benchmark's fixed workload, not content: not checked.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, or_, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ClusterIn, IdeaOut, InvalidAIOutput
from ai.embeddings import embedder
from ai.functions import GenerateIdeas
from ai.intents import intent_key
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from consumers.relevance import closest, matching, significant_words
from consumers.stage1_consolidation import consolidate_run
from shared.automation_logger import AutomationLogger, RunRef
from shared.catalogue import BY_NUMBER
from shared.models import ACTIVE_RUN_STATUSES, AutomationRun, Cluster, ContentIdea, Keyword
from shared.seed_queries import eligible_clusters

TAKEN_TITLES = 200  # existing titles shown per batch so the AI avoids them: the prompt stays bounded
PRIOR_KEYWORDS = 200  # keywords of earlier clusters compared per batch, the closest in words first
NEAR_DUPLICATE = 0.85  # MiniLM cosine from which two keywords or titles ask for one article
LOGGED_DROPS = 8  # drops spelled out per batch in the run log (the rest counted)


def _before_active_run(site_id: Any) -> ColumnElement[bool]:
    """Ideas the site had when its active run (at most one: the per-site lock) started."""
    started = (select(AutomationRun.started_at)
               .where(AutomationRun.site_id == site_id, AutomationRun.status.in_(ACTIVE_RUN_STATUSES))
               .scalar_subquery())
    return ContentIdea.created_at < func.coalesce(started, func.now())


# The word-matching statements of `load`, built once per cap (`consumers.relevance.closest`); each binds
# the site (`site_id`) and the batch's words (`matching`).
@functools.cache
def _taken_titles(limit: int) -> Select[str]:
    """Titles the site had before its run, sharing the most words with the batch's cluster names."""
    site = bindparam("site_id", type_=Integer)
    return closest(select(ContentIdea.title).where(ContentIdea.site_id == site, _before_active_run(site)),
                   ContentIdea.title, limit, ties=ContentIdea.id)


@functools.cache
def _prior_ideas(limit: int) -> Select[str, str]:
    """(title, primary keyword) of the site's ideas from before its run sharing the most words with the batch."""
    site = bindparam("site_id", type_=Integer)
    return closest(select(ContentIdea.title, func.coalesce(ContentIdea.primary_keyword, ""))
                   .where(ContentIdea.site_id == site, _before_active_run(site)),
                   ContentIdea.title, limit, ties=ContentIdea.id)


@functools.cache
def _earlier_keywords(limit: int) -> Select[int | None, str]:
    """(cluster id, keyword) of the site's clusters before the batch's last one (`last_cluster`),
    sharing the most words with the batch."""
    return closest(select(Keyword.cluster_id, Keyword.keyword)
                   .where(Keyword.site_id == bindparam("site_id", type_=Integer),
                          Keyword.cluster_id < bindparam("last_cluster", type_=Integer)),
                   Keyword.keyword, limit, ties=Keyword.id)


@dataclass(frozen=True)
class IdeasInput:
    """A batch's clusters and what their ideas must not repeat."""

    clusters: list[ClusterIn]
    taken: frozenset[str]  # titles shown to the AI as taken
    prior_ideas: tuple[tuple[str, str], ...] = ()  # (title, primary keyword) of the site's ideas before the run
    earlier_keywords: tuple[tuple[int, str], ...] = ()  # (cluster id, keyword) of clusters before the last one


@dataclass
class IdeasOutput:
    ideas: dict[int, list[IdeaOut]]
    asked: set[int]  # clusters that cost an AI call
    dropped: list[str] = field(default_factory=list)  # what was left out and why, one line each
    logger: AutomationLogger | None = None  # the process's, for the run log lines on the drops


class IdeasStage:
    stage = BY_NUMBER[2]
    sequential_above: int | None = None
    load_in_claim: LoadInClaim | None = None

    async def before_planning(self, deps: Deps, session: AsyncSession, run: AutomationRun, ref: RunRef) -> None:
        """Stage 1's clusters are drawn again over the whole run before their ideas are planned, in the
        planning transaction (`consumers.stage1_consolidation`)."""
        await consolidate_run(deps, session, run, ref)

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> IdeasInput | None:
        # a cluster's keywords from before its latest idea were shown when its ideas were made, and got an
        # idea or were left out then: a reopened cluster is shown only the keywords that joined it since
        last_idea = (select(func.max(ContentIdea.created_at)).where(ContentIdea.cluster_id == Cluster.id)
                     .correlate(Cluster).scalar_subquery())
        since = or_(last_idea.is_(None), Keyword.created_at > last_idea)
        rows = (await session.execute(
            select(Cluster, func.array_remove(
                func.array_agg(aggregate_order_by(Keyword.keyword, Keyword.id)).filter(since), None))
            .outerjoin(Keyword, Keyword.cluster_id == Cluster.id)
            .where(Cluster.id.in_(item_ids), *eligible_clusters(site_id)).group_by(Cluster.id).order_by(Cluster.id)
        )).all()
        if not rows:
            return None
        covered: dict[int, set[frozenset[str]]] = {c.id: set() for c, _ in rows}
        for cluster_id, primary in (await session.execute(
                select(ContentIdea.cluster_id, ContentIdea.primary_keyword)
                .where(ContentIdea.cluster_id.in_(list(covered)), ContentIdea.primary_keyword.is_not(None)))).all():
            covered[cluster_id].add(intent_key(str(primary)))
        clusters = [ClusterIn(id=c.id, name=c.name, description=c.description,
                              keywords=tuple(k for k in kws or () if intent_key(k) not in covered[c.id]))
                    for c, kws in rows]
        # titles that could clash: the site's titles sharing the most words with the clusters' names
        # (a site-wide list would grow with the site; the unique constraint rejects any clash missed)
        name_words = significant_words(c.name for c in clusters)
        taken = frozenset((await session.scalars(_taken_titles(TAKEN_TITLES), {
            "site_id": site_id, **matching(name_words)})).all()) if name_words else frozenset()
        words = significant_words([c.name for c in clusters] + [k for c in clusters for k in c.keywords])
        prior = (await session.execute(_prior_ideas(TAKEN_TITLES), {"site_id": site_id, **matching(words)})).all() \
            if words else []
        # the clusters' own ideas (a reopened cluster's), whatever the narrowing above kept: all of
        # them are from before the run, since a cluster is in one batch of a run
        prior = list(dict.fromkeys([*(await session.execute(
            select(ContentIdea.title, func.coalesce(ContentIdea.primary_keyword, ""))
            .where(ContentIdea.cluster_id.in_(list(covered))).order_by(ContentIdea.id))).all(), *prior]))
        earlier = (await session.execute(_earlier_keywords(PRIOR_KEYWORDS), {
            "site_id": site_id, "last_cluster": max(c.id for c in clusters), **matching(words)})).all() \
            if words else []
        return IdeasInput(clusters, taken, tuple((t, p) for t, p in prior),
                          tuple((c, k) for c, k in earlier if c is not None))

    async def generate(self, deps: Deps, inputs: IdeasInput) -> IdeasOutput:
        check = not getattr(deps.provider, "fixed_workload", False) and embedder().available()
        dropped: list[str] = []
        clusters = _distinct_keywords(inputs, dropped) if check else inputs.clusters
        asked = [c for c in clusters if c.keywords]
        ideas = await GenerateIdeas(deps.provider).execute(asked, inputs.taken)
        out = {c.id: ideas.get(c.id, []) for c in inputs.clusters}
        if check:
            out = _new_intents_only(inputs, out, dropped)
        return IdeasOutput(out, {c.id for c in asked}, dropped, deps.logger)

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: IdeasInput,
                    outputs: IdeasOutput) -> Written:
        locked = [(row.id, row.name) for row in (await session.execute(LOCK_CLUSTERS, {
            "ids": [c.id for c in inputs.clusters], "site_id": ctx.site_id})).all()]
        rows = [(cluster_id, name, idea) for cluster_id, name in locked for idea in outputs.ideas[cluster_id]]
        inserted = await _insert_ideas(session, ctx.site_id, [(cid, idea.title[:300], idea) for cid, _, idea in rows])
        # another batch of this run took the title since this one was planned: the idea keeps its cluster's name
        clashed = [(cid, f"{idea.title[:300][:300 - len(name) - 3]} ({name})"[:300], idea)
                   for cid, name, idea in rows if (cid, idea.title[:300]) not in inserted]
        if clashed:
            inserted |= await _insert_ideas(session, ctx.site_id, clashed)
        made = {cid for cid, _ in inserted}
        taken = next((cid for cid, _, _ in rows if cid not in made), None)
        if taken is not None:
            raise InvalidAIOutput(f"every idea title for cluster {taken} is already taken")
        await session.execute(MAP_CLUSTERS, {"ids": [cluster_id for cluster_id, _ in locked]})
        if outputs.dropped and outputs.logger is not None:
            more = len(outputs.dropped) - LOGGED_DROPS
            shown = "; ".join(outputs.dropped[:LOGGED_DROPS]) + (f"; and {more} more" if more > 0 else "")
            outputs.logger.log_stage_progress(
                session, ctx.run, ctx.stage, f"{len(outputs.dropped)} left out as a search intent the site already "
                                             f"covers (MiniLM cosine >= {NEAR_DUPLICATE}): {shown}")
        created = [idea_id for cluster_id, _ in locked for (cid, _), idea_id in inserted.items() if cid == cluster_id]
        return Written(items_out=len(created),
                       credits=GenerateIdeas.credits(len(outputs.asked & {cid for cid, _ in locked})),
                       handed_on=created)


def _distinct_keywords(inputs: IdeasInput, dropped: list[str]) -> list[ClusterIn]:
    """The clusters with only the keywords whose meaning nothing before them asks for: an earlier
    keyword of the cluster, a keyword of an earlier cluster of the site, an idea the site had."""
    texts = [k for c in inputs.clusters for k in c.keywords]
    if not texts:
        return inputs.clusters
    earlier = [k for _, k in inputs.earlier_keywords]
    prior = [p for _, p in inputs.prior_ideas if p] + [t for t, _ in inputs.prior_ideas]
    vectors = embedder().embed(texts + earlier + prior)
    own, others = vectors[:len(texts)], vectors[len(texts):len(texts) + len(earlier)]
    ideas = vectors[len(texts) + len(earlier):]
    out: list[ClusterIn] = []
    row = 0
    for cluster in inputs.clusters:
        kept: list[str] = []
        kept_rows: list[int] = []
        for keyword in cluster.keywords:
            vector, row = own[row], row + 1
            reason = _first_close(vector, own[kept_rows], kept, "keyword of the same cluster")
            if reason is None and len(earlier):
                mask = np.array([cid < cluster.id for cid, _ in inputs.earlier_keywords])
                reason = _first_close(vector, others[mask], [k for k, m in zip(earlier, mask, strict=True) if m],
                                      "keyword of an earlier cluster")
            if reason is None and len(prior):
                reason = _first_close(vector, ideas, prior, "existing idea")
            if reason is None:
                kept.append(keyword)
                kept_rows.append(row - 1)
            else:
                dropped.append(f"keyword \"{keyword}\" of \"{cluster.name}\" ({reason})")
        out.append(ClusterIn(cluster.id, cluster.name, cluster.description, tuple(kept)))
    return out


def _new_intents_only(inputs: IdeasInput, ideas: dict[int, list[IdeaOut]], dropped: list[str]
                      ) -> dict[int, list[IdeaOut]]:
    """The ideas whose title and keyword say something the site's ideas before the run, and the
    ideas kept before them in this batch, do not (in the clusters' order)."""
    new = [idea for c in inputs.clusters for idea in ideas[c.id]]
    if not new:
        return ideas
    prior_titles = [t for t, _ in inputs.prior_ideas]
    prior_keywords = [p for _, p in inputs.prior_ideas if p]
    vectors = embedder().embed([i.title for i in new] + [i.primary_keyword for i in new]
                               + prior_titles + prior_keywords)
    n = len(new)
    titles, keywords = vectors[:n], vectors[n:2 * n]
    old_titles, old_keywords = vectors[2 * n:2 * n + len(prior_titles)], vectors[2 * n + len(prior_titles):]
    out: dict[int, list[IdeaOut]] = {}
    kept: list[int] = []
    row = 0
    for cluster in inputs.clusters:
        out[cluster.id] = []
        for idea in ideas[cluster.id]:
            reason = (_first_close(titles[row], old_titles, prior_titles, "existing idea's title")
                      or _first_close(keywords[row], old_keywords, prior_keywords, "existing idea's keyword")
                      or _first_close(titles[row], titles[kept], [new[i].title for i in kept], "title of this batch")
                      or _first_close(keywords[row], keywords[kept], [new[i].primary_keyword for i in kept],
                                      "keyword of this batch"))
            if reason is None:
                out[cluster.id].append(idea)
                kept.append(row)
            else:
                dropped.append(f"idea \"{idea.title}\" of \"{cluster.name}\" ({reason})")
            row += 1
    return out


def _first_close(vector: np.ndarray, others: np.ndarray, texts: list[str], what: str) -> str | None:
    """Why `vector` repeats one of `others` (the closest one at or above NEAR_DUPLICATE), or None."""
    if not len(texts):
        return None
    cosines = others @ vector
    best = int(np.argmax(cosines))
    if cosines[best] < NEAR_DUPLICATE:
        return None
    return f"{what} \"{texts[best]}\", cosine {cosines[best]:.2f}"


# The batch's clusters still eligible (`shared.seed_queries.eligible_clusters`, tested against it in
# tests/integration/test_load_in_claim.py), locked in id order; then marked mapped once their ideas are in.
LOCK_CLUSTERS = text("""
    SELECT c.id, c.name FROM clusters AS c
     WHERE c.id = ANY(CAST(:ids AS integer[])) AND c.site_id = :site_id
       AND ((c.status = 'new' AND NOT EXISTS (SELECT FROM content_ideas AS i WHERE i.cluster_id = c.id))
            OR c.status = 'reopened')
     ORDER BY c.id FOR UPDATE OF c""")
MAP_CLUSTERS = text("UPDATE clusters SET status = 'mapped' WHERE id = ANY(CAST(:ids AS integer[]))")
# Ideas in the order given, each whose title the site has free (the first of two with one title wins).
INSERT_IDEAS = text("""
    INSERT INTO content_ideas (site_id, cluster_id, title, content_type, target_keywords, primary_keyword, outline,
                               description, status)
    SELECT :site_id, i.cluster_id, i.title, i.content_type, CAST(i.target_keywords AS jsonb), i.primary_keyword,
           CAST(i.outline AS jsonb), i.description, 'new'
      FROM unnest(CAST(:cluster_ids AS integer[]), CAST(:titles AS text[]), CAST(:content_types AS text[]),
                  CAST(:target_keywords AS text[]), CAST(:primary_keywords AS text[]), CAST(:outlines AS text[]),
                  CAST(:descriptions AS text[])) WITH ORDINALITY
           AS i(cluster_id, title, content_type, target_keywords, primary_keyword, outline, description, n)
     ORDER BY i.n
        ON CONFLICT (site_id, title) DO NOTHING
    RETURNING cluster_id, title, id""")


async def _insert_ideas(session: AsyncSession, site_id: int, ideas: list[tuple[int, str, IdeaOut]]
                        ) -> dict[tuple[int, str], int]:
    """Insert each (cluster id, title, idea) whose title is free, in one statement; returns the ids of
    those inserted by (cluster id, title)."""
    if not ideas:
        return {}
    rows = (await session.execute(INSERT_IDEAS, {
        "site_id": site_id, "cluster_ids": [cid for cid, _, _ in ideas], "titles": [title for _, title, _ in ideas],
        "content_types": [idea.content_type for _, _, idea in ideas],
        "target_keywords": [json.dumps(list(idea.target_keywords)) for _, _, idea in ideas],
        "primary_keywords": [idea.primary_keyword[:300] for _, _, idea in ideas],
        "outlines": [json.dumps([{"h2": s.h2, "h3s": list(s.h3s)} for s in idea.outline]) for _, _, idea in ideas],
        "descriptions": [idea.description for _, _, idea in ideas]})).all()
    return {(row.cluster_id, row.title): row.id for row in rows}
