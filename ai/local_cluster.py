"""Offline keyword clustering: sentence embeddings and TF-IDF (word + character n-grams), agglomerative merging.

What keywords mean (all-MiniLM-L6-v2, `ai.embeddings`) weighs SEMANTIC_WEIGHT of the similarity and
what they say (TF-IDF) the rest; without the model (not installed, or switched off) the words alone
decide, at the provider's threshold, with a warning in the log. With meaning, keywords are labelled
search intents as often as not without the topic's word ("rate lock period" under mortgages), so a
lone keyword joins an established cluster on less evidence (`JOIN_BONUS`) than it takes to found a
new one, while a group of the batch's keywords that holds together needs more: it may be a new topic.

Batches arrive one at a time while the site's clusters accumulate, so every existing
cluster enters the agglomeration as an already-formed node: new keywords merge with each
other or with an existing cluster under one cosine-distance threshold, but two existing
clusters never merge (the site's clusters are not ours to rewrite).

Linkage is average linkage normalised by each cluster's own coherence: the cosine between
the clusters' summed vectors, which equals the mean pairwise similarity divided by the
geometric mean of the two clusters' internal similarities. Plain average linkage penalises
a large, naturally varied topic for its spread, so later keywords of a topic split off into
fragments; the normalised form keeps one threshold meaningful for a pair of keywords and for
a keyword against a 30-member cluster alike. Measured ARI on the demo topics (batches of 20
with accumulating clusters / one call), each at its best single threshold: plain average
linkage 0.83 / 0.81, normalised 0.87 / 0.91.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

from ai.base import ClusterOut, ExistingCluster, KeywordIn
from ai.local_case import cased as fixed_case
from ai.local_case import title_case

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

# Function words plus search-intent modifiers: they say how people search, not what about,
# so two keywords sharing only "best ... for beginners" must not look alike.
STOP_WORDS: frozenset[str] = frozenset(
    """a an the and or but if of to in on at by for from with without into onto over under
    up down out about as than vs versus via per is are was were be been being am do does did
    doing done can could should would will shall may might must i me my we our you your it its
    they them their he she his her this that these those there here what which who whom whose
    when where why how much many any some all each every no not too very more most so just
    best top cheap cheapest cheaper budget easy easiest simple good great better ideas idea tips
    tip guide guides review reviews explained beginner beginners near me worth vs. list lists
    way ways step steps 2024 2025 2026 new free online""".split()
)

_TOKEN = re.compile(r"[a-z0-9][a-z0-9&'+-]*")
_WORD_WEIGHT = 0.3  # share of the word n-gram block; character n-grams carry the rest
DEFAULT_DISTANCE_THRESHOLD = 0.78  # by words alone (no embedding model)
# By meaning and words (bench/README.md has how they were chosen): the share of the sentence
# embeddings in the similarity, the distance at which the batch's own keywords form a cluster, and
# how much nearer an established cluster counts when a keyword may join it.
SEMANTIC_WEIGHT = 0.8
SEMANTIC_DISTANCE = 0.4  # the batch's own keywords group at a cosine of 0.6
JOIN_BONUS = (0.35, 0.25)  # a lone keyword joins a cluster at cosine 0.25, a group of keywords at 0.35
ESTABLISHED = 3  # keywords from which a group of the batch's own counts as a cluster to join


def tokens(text: str) -> list[str]:
    """Lowercase word tokens of a keyword."""
    return _TOKEN.findall(text.lower())


def stem(word: str) -> str:
    """Fold plurals so "shoes"/"shoe" and "beds"/"bed" share a feature."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_text(text: str) -> str:
    """The topical words of a keyword, stemmed; what the vectors are built from."""
    return " ".join(stem(t) for t in tokens(text) if t not in STOP_WORDS)


_WHITE_SPACES = re.compile(r"\s\s+")
_WORD_PATTERN = re.compile(r"\S+")


def _word_grams(doc: str) -> list[str]:
    """Word 1- and 2-grams: scikit-learn's analyzer="word", ngram_range=(1, 2), token_pattern=r"\\S+"."""
    words = _WORD_PATTERN.findall(doc)
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def _char_grams(doc: str) -> list[str]:
    """Character 3-5-grams inside space-padded words: scikit-learn's analyzer="char_wb", ngram_range=(3, 5)
    (a word shorter than n counts once, as itself)."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", doc).split():
        padded = f" {word} "
        for n in range(3, 6):
            grams += [padded[i:i + n] for i in range(max(1, len(padded) - n + 1))]
            if len(padded) <= n:
                break
    return grams


@dataclass(frozen=True)
class SparseRows:
    """A sparse matrix as coordinates, entries grouped by row: what the TF-IDF vectors need, without SciPy."""

    rows: np.ndarray  # int64, non-decreasing
    cols: np.ndarray  # int64
    vals: np.ndarray  # float64
    shape: tuple[int, int]

    def toarray(self) -> np.ndarray:
        dense = np.zeros(self.shape)
        dense[self.rows, self.cols] = self.vals
        return dense


def _unit_rows(rows: np.ndarray, vals: np.ndarray, count: int) -> np.ndarray:
    norms = np.sqrt(np.bincount(rows, weights=vals * vals, minlength=count))
    norms[norms == 0] = 1.0
    return vals / norms[rows]  # type: ignore[no-any-return]


def _tfidf(docs: list[str], analyze: Callable[[str], list[str]]) -> SparseRows:
    """Row-normalised TF-IDF with square-root IDF.

    Full IDF punishes exactly the head terms a topic's keywords share ("solar", "guitar"),
    because they are frequent; the square root still discounts filler without drowning them.

    The numbers of scikit-learn's TfidfVectorizer(sublinear_tf=True, norm=None) (smooth IDF, columns in
    the vocabulary's sorted order), then each value times 1/sqrt(idf) and the rows scaled to unit length,
    computed with numpy alone: importing scikit-learn and SciPy cost the stage 1 process about 80 MB of
    RSS, more than half of its memory goal, for two sparse matrices.
    """
    vocabulary: dict[str, int] = {}  # term -> its number in order of appearance
    found = array("q")  # each doc's terms' numbers, doc after doc: no Python object per term
    lengths = []
    for doc in docs:
        grams = analyze(doc.lower())
        found.extend(vocabulary.setdefault(gram, len(vocabulary)) for gram in grams)
        lengths.append(len(grams))
    size = len(vocabulary)
    sorted_number = np.empty(size, dtype=np.int64)  # scikit-learn's columns are the terms in sorted order
    sorted_number[np.fromiter((vocabulary[t] for t in sorted(vocabulary)), dtype=np.int64, count=size)] = (
        np.arange(size))
    keys = (np.repeat(np.arange(len(docs), dtype=np.int64), lengths) * size
            + sorted_number[np.frombuffer(found, dtype=np.int64)])
    del found, vocabulary
    unique, counts = np.unique(keys, return_counts=True)
    rows, cols = unique // size, unique % size
    tf = counts.astype(np.float64)
    idf = np.log((len(docs) + 1) / (np.bincount(cols, minlength=size) + 1.0)) + 1
    vals = (np.log(tf) + 1) * idf[cols] * (1.0 / np.sqrt(idf))[cols]
    return SparseRows(rows, cols, _unit_rows(rows, vals, len(docs)), (len(docs), size))


def embed(texts: list[str]) -> SparseRows:
    """Unit rows over word 1-2-grams and character 3-5-grams of the keywords' topical words.

    Fitted on the call's own corpus (the batch plus the existing clusters' members), so the
    IDF reflects the site's vocabulary and improves as clusters accumulate.
    """
    docs = [content_text(t) or t.lower().strip() or "_" for t in texts]
    word, char = _tfidf(docs, _word_grams), _tfidf(docs, _char_grams)
    order = np.argsort(np.concatenate([word.rows, char.rows]), kind="stable")  # by row, words first
    rows = np.concatenate([word.rows, char.rows])[order]
    cols = np.concatenate([word.cols, char.cols + word.shape[1]])[order]
    vals = np.concatenate([word.vals * np.sqrt(_WORD_WEIGHT), char.vals * np.sqrt(1 - _WORD_WEIGHT)])[order]
    return SparseRows(rows, cols, _unit_rows(rows, vals, len(docs)), (len(docs), word.shape[1] + char.shape[1]))


def _node_of(batch: int, existing: list[ExistingCluster]) -> np.ndarray:
    """The starting node of each text: each batch keyword its own, then each site cluster's members theirs."""
    sizes = [max(1, len(c.keywords)) for c in existing]
    return np.concatenate([np.arange(batch), np.repeat(np.arange(batch, batch + len(existing)), sizes)])


def _node_sums(vectors: SparseRows, batch: int, existing: list[ExistingCluster]) -> SparseRows:
    """One row per starting node: each batch keyword, then each site cluster's summed members."""
    nodes = batch + len(existing)
    keys = _node_of(batch, existing)[vectors.rows] * vectors.shape[1] + vectors.cols
    unique, inverse = np.unique(keys, return_inverse=True)
    return SparseRows(unique // vectors.shape[1], unique % vectors.shape[1],
                      np.bincount(inverse, weights=vectors.vals), (nodes, vectors.shape[1]))


def _sparse_gram(sums: SparseRows, width: int = 2048) -> np.ndarray:
    """sums @ sums.T as a dense (nodes x nodes) array, summed over blocks of `width` features: a dense
    nodes x width block at a time (3.6 MB for 220 nodes), never a dense nodes x features copy."""
    nodes, features = sums.shape
    gram = np.zeros((nodes, nodes))
    order = np.argsort(sums.cols, kind="stable")
    rows, cols, vals = sums.rows[order], sums.cols[order], sums.vals[order]
    bounds = np.searchsorted(cols, np.arange(0, features + width, width))
    block = np.empty((nodes, width))
    for start, end in pairwise(bounds.tolist()):
        block.fill(0.0)
        block[rows[start:end], cols[start:end] % width] = vals[start:end]
        gram += block @ block.T
    return gram


def _agglomerate(gram: np.ndarray, n_existing: int, threshold: float,
                 join_bonus: tuple[float, float] = (0.0, 0.0)) -> list[list[int]]:
    """Greedy merging on the Gram matrix of node sums; returns the surviving groups of nodes.

    Merging nodes i and j sums their vectors, a rank-one update of the Gram matrix, so each
    merge costs O(n) and the loop never touches the TF-IDF vectors again.

    `join_bonus` is taken off the distance to an established node (a site cluster, or a group of
    ESTABLISHED keywords of the batch) from a lone keyword (first) or from a group (second): joining
    a cluster takes less evidence than founding one, a lone keyword has no other evidence, and a group
    that holds together may be a topic of its own. Two site clusters never merge.
    """
    n = len(gram)
    is_site = np.arange(n) >= n - n_existing
    alive = np.ones(n, dtype=bool)
    size = np.ones(n, dtype=int)  # nodes in each group
    groups = [[i] for i in range(n)]
    norms = np.sqrt(np.clip(np.diag(gram), 1e-12, None))

    def bonus(i: int) -> np.ndarray:
        established = is_site | (size >= ESTABLISHED)
        if established[i]:
            return np.where((size == 1) & ~is_site, join_bonus[0], join_bonus[1])
        return np.where(established, join_bonus[0] if size[i] == 1 else join_bonus[1], 0.0)

    dist = 1.0 - gram / np.outer(norms, norms)
    if any(join_bonus):
        dist -= np.array([bonus(i) for i in range(n)]).reshape(n, n)
    dist[np.ix_(is_site, is_site)] = np.inf
    np.fill_diagonal(dist, np.inf)
    while True:
        i, j = divmod(int(np.argmin(dist)), n)
        if not dist[i, j] < threshold:
            break
        if is_site[j]:
            i, j = j, i  # the site cluster survives the merge
        gram[i, :] += gram[j, :]
        gram[:, i] += gram[:, j]
        norms[i] = np.sqrt(max(gram[i, i], 1e-12))
        alive[j] = False
        groups[i] += groups[j]
        size[i] += size[j]
        row = 1.0 - gram[i] / (norms[i] * norms)
        if any(join_bonus):
            row -= bonus(i)
        row[~alive] = np.inf
        if is_site[i]:
            row[is_site] = np.inf
        row[i] = np.inf
        dist[i, :] = dist[:, i] = row
        dist[j, :] = dist[:, j] = np.inf
    return [sorted(groups[i]) for i in range(n) if alive[i]]


_QUESTION_WORDS = frozenset("how what why when where which who is are do does can should".split())


def _spans(text: str) -> dict[tuple[str, ...], str]:
    """Stemmed spans of a keyword that start and end on topical words, with their surface text."""
    toks = tokens(text)
    spans: dict[tuple[str, ...], str] = {}
    for start, first in enumerate(toks):
        if first in STOP_WORDS:
            continue
        for end in range(start, min(len(toks), start + 6)):
            if toks[end] not in STOP_WORDS:
                spans[tuple(stem(t) for t in toks[start : end + 1])] = " ".join(toks[start : end + 1])
    return spans


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """Whether `inner` is a contiguous part of `outer`."""
    return any(outer[i : i + len(inner)] == inner for i in range(len(outer) - len(inner) + 1))


def _single_name(text: str) -> str:
    """A one-keyword cluster keeps its keyword, minus intent modifiers ("best", "review")."""
    toks = tokens(text)
    if toks and toks[0] in _QUESTION_WORDS:
        return title_case(" ".join(toks))
    while len(toks) > 1 and toks[0] in STOP_WORDS:
        toks = toks[1:]
    while len(toks) > 1 and toks[-1] in STOP_WORDS:
        toks = toks[:-1]
    return title_case(" ".join(toks))


def cluster_name(texts: list[str], centrality: list[float]) -> str:
    """The members' most shared word, grown into the longest phrase most of them still share.

    "index" (22 members) grows to "index fund" (21) but not to "index fund investing" (1):
    an extension must keep a quarter of the phrase's members and a sixth of the cluster.
    """
    if len(texts) == 1:
        return _single_name(texts[0])
    df: Counter[tuple[str, ...]] = Counter()
    weight: dict[tuple[str, ...], float] = {}
    surfaces: dict[tuple[str, ...], Counter[str]] = {}
    for text, central in zip(texts, centrality, strict=True):
        for span, surface in _spans(text).items():
            df[span] += 1
            weight[span] = weight.get(span, 0.0) + central
            surfaces.setdefault(span, Counter())[surface] += 1
    if not df:
        return _single_name(texts[0])

    def rank(span: tuple[str, ...]) -> tuple[int, float, tuple[str, ...]]:
        return (df[span], weight[span], tuple(reversed(span)))

    best = max((s for s in df if len(s) == 1), key=rank, default=max(df, key=rank))
    while True:
        floor = max(2, df[best] / 4, len(texts) / 6)
        longer = [s for s in df if len(s) > len(best) and df[s] >= floor and _contains(s, best)
                  and sum(t not in STOP_WORDS for t in s) == sum(t not in STOP_WORDS for t in best) + 1]
        if not longer:
            break
        best = max(longer, key=rank)
    return title_case(surfaces[best].most_common(1)[0][0])


def _describe(name: str, texts: list[str]) -> str:
    """One sentence saying what the cluster covers, with a couple of member examples."""
    examples = ", ".join(f'"{t}"' for t in texts[:2])
    return f"Searches about {fixed_case(name.lower())}, such as {examples}."


def _gram(texts: list[str], keywords: int, existing: list[ExistingCluster], semantic: bool) -> np.ndarray:
    """The Gram matrix of the starting nodes' summed vectors: what the words say (TF-IDF) and, with
    `semantic`, what they mean (sentence embeddings), weighted SEMANTIC_WEIGHT."""
    lexical = _sparse_gram(_node_sums(embed(texts), keywords, existing))
    if not semantic:
        return lexical
    from ai.embeddings import embedder

    vectors = embedder().embed(texts).astype(np.float64)
    meaning = np.zeros((keywords + len(existing), vectors.shape[1]))
    np.add.at(meaning, _node_of(keywords, existing), vectors)  # each node's texts, summed in order
    return SEMANTIC_WEIGHT * (meaning @ meaning.T) + (1 - SEMANTIC_WEIGHT) * lexical


def semantic_available() -> bool:
    """Whether this process clusters by meaning (the model is installed and loads)."""
    from ai.embeddings import embedder

    return embedder().available()


def cluster(keywords: list[KeywordIn], existing: list[ExistingCluster], threshold: float) -> list[ClusterOut]:
    """Group a batch of keywords, joining existing clusters where they are close enough.

    By meaning and words when the embedding model is available (`SEMANTIC_DISTANCE`, `JOIN_BONUS`),
    by words alone at `threshold` otherwise."""
    if not keywords:
        return []
    from ai.embeddings import keep_large_allocations_mapped

    keep_large_allocations_mapped()  # the batch's arrays go back to the OS when freed, model or not
    texts = [k.text for k in keywords]
    members = [text for c in existing for text in (c.keywords or (c.name,))]
    semantic = semantic_available()
    gram = _gram(texts + members, len(keywords), existing, semantic)
    groups = (_agglomerate(gram.copy(), len(existing), SEMANTIC_DISTANCE, JOIN_BONUS) if semantic
              else _agglomerate(gram.copy(), len(existing), threshold))
    out: list[ClusterOut] = []
    for group in groups:
        rows = [r for r in group if r < len(keywords)]
        if not rows:
            continue
        ids = tuple(keywords[r].id for r in rows)
        member_texts = [texts[r] for r in rows]
        site = [existing[r - len(keywords)] for r in group if r >= len(keywords)]
        if site:
            name = site[0].name
            out.append(ClusterOut(name, _describe(name, member_texts), ids, site[0].id))
            continue
        centrality = gram[np.ix_(rows, rows)].sum(axis=1).tolist()
        name = cluster_name(member_texts, centrality)
        out.append(ClusterOut(name, _describe(name, member_texts), ids))
    return out


# Consolidation: one global, order-independent pass over a run's keywords once stage 1 has no batches left.
CONSOLIDATE_NEIGHBOURS = 10  # edges per keyword in the similarity graph
# A neighbour is an edge only if it is at least this share as similar as the keyword's nearest one: a small
# run (two or three keywords a topic) otherwise ties every keyword to seven or eight of other topics, and
# Louvain merged topics (100 demo keywords of 20 topics: ARI 0.59 without, 1.00 with; the labelled sets,
# whose keywords are all about equally far apart, are unchanged: 0.49 and 0.37).
CONSOLIDATE_FLOOR = 0.6
CONSOLIDATE_SCALE = 55.0  # modularity resolution sqrt(nodes / CONSOLIDATE_SCALE): 2 at 220 keywords, 4 at 880
# (modularity's resolution limit: the same resolution gives ever bigger clusters as the graph grows)
_BLOCK = 256  # rows of the similarity matrix held at once (256 x n float32)


def _knn_edges(dense: np.ndarray | None, lexical: csr_matrix, k: int) -> csr_matrix:
    """The symmetric k-nearest-neighbour graph of the rows, weighted by their (positive) similarity; of a
    row's k nearest, those less than CONSOLIDATE_FLOOR as similar as the nearest are left out.

    Similarity is SEMANTIC_WEIGHT of the embeddings' cosine and the rest TF-IDF (words alone without
    `dense`); computed _BLOCK rows at a time, so memory is O(n k), never n x n. Ties are broken by the
    lower row index, rows being in canonical order, so the graph does not depend on input order."""
    from scipy.sparse import csr_matrix

    n = lexical.shape[0]
    k = min(k, n - 1)
    rows, cols, weights = [], [], []
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        block = np.zeros((stop - start, n), dtype=np.float32)
        if dense is not None:
            block += SEMANTIC_WEIGHT * (dense[start:stop] @ dense.T)
        if lexical is not None:
            share = 1.0 if dense is None else 1 - SEMANTIC_WEIGHT
            block += share * (lexical[start:stop] @ lexical.T).toarray().astype(np.float32)
        block[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        nearest = np.argsort(-block, axis=1, kind="stable")[:, :k]
        similarity = np.clip(np.take_along_axis(block, nearest, axis=1), 0.0, None)
        similarity[similarity < CONSOLIDATE_FLOOR * similarity[:, :1]] = 0.0
        rows.append(np.repeat(np.arange(start, stop), k))
        cols.append(nearest.ravel())
        weights.append(similarity.ravel())
    graph = csr_matrix((np.concatenate(weights).astype(np.float64), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(n, n))
    graph.eliminate_zeros()
    return graph.maximum(graph.T).tocsr()


def _louvain_level(graph: csr_matrix, fixed: np.ndarray, resolution: float) -> tuple[np.ndarray, bool]:
    """One Louvain level: nodes move, in index order, to the neighbouring community of best modularity
    gain until none moves. A fixed node (a site cluster) never moves, and a community holding one
    never takes a second: site clusters never merge.

    Plain Python lists, not NumPy scalars, in the loop: it is per node and per edge, and NumPy's
    per-element overhead made it ten times slower."""
    n = graph.shape[0]
    degree = np.asarray(graph.sum(axis=1)).ravel().tolist()
    total = float(sum(degree)) or 1.0
    community = list(range(n))
    community_degree = list(degree)
    indptr, indices, data = graph.indptr.tolist(), graph.indices.tolist(), graph.data.tolist()
    is_fixed = fixed.tolist()
    moved = False
    changed = True
    while changed:
        changed = False
        for node in range(n):
            if is_fixed[node]:
                continue
            own = community[node]
            links: dict[int, float] = {}
            for edge in range(indptr[node], indptr[node + 1]):
                neighbour = indices[edge]
                if neighbour != node:
                    target = community[neighbour]
                    links[target] = links.get(target, 0.0) + data[edge]
            node_degree = degree[node]
            community_degree[own] -= node_degree
            scale = resolution * node_degree / total
            best, best_gain = own, links.get(own, 0.0) - scale * community_degree[own]
            for target in sorted(links):
                gain = links[target] - scale * community_degree[target]
                if gain > best_gain + 1e-12:
                    best, best_gain = target, gain
            community_degree[best] += node_degree
            if best != own:
                community[node] = best
                changed = moved = True
    return np.array(community), moved


def louvain(graph: csr_matrix, fixed: np.ndarray, resolution: float) -> np.ndarray:
    """Community of each node (Louvain, deterministic: nodes visited in index order, ties to the lower
    community); `fixed` nodes are site clusters, which never move and never share a community."""
    from scipy.sparse import csr_matrix

    membership = np.arange(graph.shape[0])
    for _ in range(20):
        community, moved = _louvain_level(graph, fixed, resolution)
        labels, community = np.unique(community, return_inverse=True)
        membership = community[membership]
        if not moved:
            break
        fold = csr_matrix((np.ones(len(community)), (community, np.arange(len(community)))),
                          shape=(len(labels), len(community)))
        graph = (fold @ graph @ fold.T).tocsr()  # the diagonal keeps each community's inner weight (its degree)
        fixed = np.asarray((fold @ fixed.astype(float)) > 0).ravel()
    return membership


def consolidate(keywords: list[KeywordIn], existing: list[ExistingCluster],
                neighbours: int = CONSOLIDATE_NEIGHBOURS, resolution: float | None = None
                ) -> list[ClusterOut]:
    """Re-cluster a whole run's keywords at once, after its batches, so the result does not depend on the
    order the keywords came in or on how the batches fell.

    Why: batch by batch (20 keywords, each batch against the clusters so far) the first keywords of a
    topic found clusters that later, closer keywords cannot merge, and which ones depends on the order:
    on the labelled set 119 clusters (67 singletons), ARI 0.47 in topic-interleaved order and 0.36-0.39
    shuffled. One pass over all of them here gives 0.49 in any order (demo 1.00). Keywords that are far
    from everything still go somewhere: each keyword keeps its `neighbours` nearest as edges.

    How: a graph of the keywords (in canonical order: lowercased text, then id) and the site's existing
    clusters' sample members (folded into one node per cluster once the edges are drawn), each joined to
    its `neighbours` most similar (SEMANTIC_WEIGHT sentence embeddings, the rest TF-IDF; words alone
    without the model), then Louvain communities at `resolution` (default sqrt(nodes / CONSOLIDATE_SCALE)).
    Site clusters never move and never share a community, so keywords join them but two never merge.
    Memory is O(n * neighbours) plus a _BLOCK x n float32 block; no n x n matrix. SciPy's sparse matrices
    are imported here (22 MB of RSS), not by the batch clusterer: consolidation runs once per run, in
    the process that plans stage 2.

    Returns clusters like `cluster`: a community holding a site cluster joins it (`existing_id`), any
    other becomes a new cluster named from its members. The caller maps new clusters onto the run's
    batch clusters (keep the one holding most of a community's keywords, ties to the lowest id) and
    removes the run's clusters left empty; site clusters from before the run only ever gain keywords.
    """
    if not keywords:
        return []
    from scipy.sparse import csr_matrix

    order = sorted(range(len(keywords)), key=lambda r: (" ".join(keywords[r].text.lower().split()), keywords[r].id))
    ordered = [keywords[r] for r in order]
    texts = [k.text for k in ordered]
    members = [text for c in existing for text in (c.keywords or (c.name,))]
    n = len(ordered)
    words = embed(texts + members)  # unit rows; every site cluster's sample members are nodes of their own
    lexical = csr_matrix((words.vals, (words.rows, words.cols)), shape=words.shape)
    dense = None
    if semantic_available():
        from ai.embeddings import embedder

        dense = embedder().embed(texts + members).astype(np.float32)
    graph = _knn_edges(dense, lexical, neighbours)
    # fold each site cluster's members into one node (their edges summed, their inner weight on the
    # diagonal, as a Louvain level does): a keyword is drawn to a cluster by its members, not by a
    # centroid that would be every keyword's nearest neighbour
    owner = np.concatenate([np.arange(n)] + [np.full(max(1, len(c.keywords)), n + i) for i, c in enumerate(existing)])
    fold = csr_matrix((np.ones(len(owner)), (owner, np.arange(len(owner)))), shape=(n + len(existing), len(owner)))
    graph = (fold @ graph @ fold.T).tocsr()
    fixed = np.arange(n + len(existing)) >= n
    if resolution is None:
        resolution = max(1.0, float(np.sqrt(len(owner) / CONSOLIDATE_SCALE)))
    communities = louvain(graph, fixed, resolution)
    out: list[ClusterOut] = []
    for community in sorted(set(communities.tolist()), key=lambda c: int(np.flatnonzero(communities == c)[0])):
        nodes = np.flatnonzero(communities == community)
        rows = [int(r) for r in nodes if r < n]
        if not rows:
            continue
        ids = tuple(ordered[r].id for r in rows)
        member_texts = [texts[r] for r in rows]
        site = [existing[int(r) - n] for r in nodes if r >= n]
        if site:
            out.append(ClusterOut(site[0].name, _describe(site[0].name, member_texts), ids, site[0].id))
            continue
        vectors = dense[rows] if dense is not None else lexical[rows].toarray()  # rows < n: the keywords
        centrality = (vectors @ vectors.sum(axis=0)).tolist()
        name = cluster_name(member_texts, centrality)
        out.append(ClusterOut(name, _describe(name, member_texts), ids))
    return out
