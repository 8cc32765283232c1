"""The offline writer's drafts as an editor reads them: `python -m bench.writer [--set demo|labelled|holdout]`.

For each keyword set (the demo's keywords, the labelled set of the tests, and a small held-out set written
after the writer was tuned on the other two: tests/data/writer_holdout_keywords.json) it does what a demo run
does with the offline provider, in this process and without a database: clusters the keywords in one
call, writes one idea per search intent for every cluster (titles already taken by the site are shown
as taken), writes every idea's article and its image prompts, and lays out every prompt's caption at the
default image size. Then it prints:
- titles flagged by the patterns of `ai.local_checks.title_problems`, out of all titles, by pattern;
- content types the keyword contradicts (`type_contradiction`);
- primary keyword density (occurrences per 150 words): max and median, articles over 1;
- the share of H2/H3 heading occurrences identical to a heading of another cluster, and the most shared;
- FAQ answers that echo their question;
- words per article (min, median, max) and caption truncations;
- a seeded random sample of titles (`--sample 40`) with their keywords, to read as an editor would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ai.base import ArticleIn, ArticleOut, ClusterIn, IdeaIn, IdeaOut, ImagePromptOut, KeywordIn
from ai.local import LocalProvider
from ai.local_checks import (
    faq_echoes,
    faq_pairs,
    headings,
    keyword_density,
    shared_heading_share,
    title_problems,
    type_contradiction,
)
from ai.local_images import caption_layout
from shared.demo_data import demo_keywords

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
LABELLED = DATA / "labelled_keywords.json"
HOLDOUT = DATA / "writer_holdout_keywords.json"
WIDTH, HEIGHT = 512, 288  # the settings' default image size


def keyword_set(name: str) -> list[str]:
    """The demo's keywords, or a set of the tests' data, topics interleaved as a user would paste them."""
    if name == "demo":
        return [k for k, _ in demo_keywords()]
    topics: dict[str, list[str]] = json.loads((HOLDOUT if name == "holdout" else LABELLED).read_text())
    columns = list(topics.values())
    longest = max(len(c) for c in columns)
    return [c[i] for i in range(longest) for c in columns if i < len(c)]


@dataclass
class Draft:
    cluster: ClusterIn
    idea: IdeaOut
    article: ArticleOut
    prompts: list[ImagePromptOut] = field(default_factory=list)


def write_site(keywords: list[str], year: int | None = None) -> list[Draft]:
    """Every draft a demo run of `keywords` would write, in order (clusters, ideas, articles, prompts)."""
    provider = LocalProvider()

    async def run() -> list[Draft]:
        clusters = await provider.cluster_keywords([KeywordIn(i, k) for i, k in enumerate(keywords)], [])
        taken: set[str] = set()
        drafts: list[Draft] = []
        for number, out in enumerate(clusters, start=1):
            cluster = ClusterIn(number, out.name, out.description, tuple(keywords[i] for i in out.keyword_ids), year)
            for idea in await provider.generate_ideas(cluster, frozenset(taken)):
                taken.add(idea.title)
                idea_in = IdeaIn(len(drafts) + 1, idea.title, idea.content_type, idea.target_keywords, idea.outline,
                                 idea.description, cluster.name)
                article = await provider.generate_content(idea_in)
                prompts = await provider.generate_image_prompts(
                    ArticleIn(idea_in.id, article.title, article.markdown, article.sections, idea.target_keywords))
                drafts.append(Draft(cluster, idea, article, prompts))
        return drafts

    return asyncio.run(run())


def caption_truncated(prompt: str) -> bool:
    """Whether the rendered caption of `prompt` at the default size leaves part of its subject out."""
    return not caption_layout(prompt, WIDTH, HEIGHT).complete


def figures(drafts: list[Draft]) -> dict[str, object]:
    titles = [(d.idea.primary_keyword, d.idea.title) for d in drafts]
    flagged = {t: title_problems(t, k) for k, t in titles}
    by_pattern = Counter(p for problems in flagged.values() for p in problems)
    contradictions = [(d.idea.primary_keyword, d.idea.content_type, d.idea.title, why) for d in drafts
                      if (why := type_contradiction(d.idea.primary_keyword, d.idea.content_type, d.idea.title,
                                                    [h for _, h in headings(d.article.markdown)]))]
    densities = [keyword_density(d.article.markdown, d.idea.primary_keyword) for d in drafts]
    share, shared = shared_heading_share((d.cluster.id, d.article.markdown) for d in drafts)
    pairs = [(q, a) for d in drafts for q, a in faq_pairs(d.article.markdown)]
    echoes = [(q, a) for q, a in pairs if faq_echoes(q, a)]
    words = [d.article.word_count for d in drafts]
    prompts = [p.prompt for d in drafts for p in d.prompts]
    truncated = [p for p in prompts if caption_truncated(p)]
    densest = max(drafts, key=lambda d: keyword_density(d.article.markdown, d.idea.primary_keyword))
    return {
        "clusters": len({d.cluster.id for d in drafts}), "articles": len(drafts),
        "titles_flagged": sum(1 for p in flagged.values() if p), "titles": len(titles),
        "flagged_by_pattern": dict(by_pattern.most_common()),
        "flagged_examples": [t for t, p in flagged.items() if p][:12],
        "type_contradictions": len(contradictions), "contradiction_examples": contradictions[:8],
        "density_max": max(densities), "density_median": statistics.median(densities),
        "density_over_1": sum(1 for x in densities if x > 1.0),
        "densest": f"{densest.idea.primary_keyword!r} in {densest.idea.title!r}",
        "headings_shared_share": share, "most_shared_headings": shared[:8],
        "faq_answers": len(pairs), "faq_echoes": len(echoes), "echo_examples": echoes[:3],
        "words_min": min(words), "words_median": statistics.median(words), "words_max": max(words),
        "captions": len(prompts), "captions_truncated": len(truncated),
        "sample": random.Random(16).sample(titles, min(40, len(titles))),
    }


def report(name: str, found: dict[str, object], sample: int, seconds: float) -> None:
    print(f"== {name}: {found['articles']} articles in {found['clusters']} clusters ({seconds:.1f} s) ==")
    print(f"  titles flagged by the patterns: {found['titles_flagged']} of {found['titles']} "
          f"{found['flagged_by_pattern']}")
    for title in found["flagged_examples"]:  # type: ignore[attr-defined]
        print(f"    flagged: {title}")
    print(f"  content types the keyword contradicts: {found['type_contradictions']}")
    for example in found["contradiction_examples"]:  # type: ignore[attr-defined]
        print(f"    {example}")
    print(f"  primary keyword per 150 words: max {found['density_max']:.2f}, median {found['density_median']:.2f}, "
          f"articles over 1: {found['density_over_1']} (densest: {found['densest']})")
    print(f"  H2/H3 headings shared with another cluster: {found['headings_shared_share']:.1%} "
          f"(most shared: {found['most_shared_headings']})")
    print(f"  FAQ answers echoing their question: {found['faq_echoes']} of {found['faq_answers']}")
    for question, answer in found["echo_examples"]:  # type: ignore[attr-defined]
        print(f"    Q: {question}\n    A: {answer[:160]}")
    print(f"  words per article: min {found['words_min']}, median {found['words_median']:.0f}, "
          f"max {found['words_max']}")
    print(f"  image captions cut short: {found['captions_truncated']} of {found['captions']}")
    print(f"  {sample} random titles (seeded), to read as an editor would:")
    for keyword, title in found["sample"][:sample]:  # type: ignore[index]
        print(f"    {title}    [{keyword}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="sets", action="append", choices=("demo", "labelled", "holdout"),
                        help="keyword set (repeatable; default all three)")
    parser.add_argument("--sample", type=int, default=40, help="random titles printed per set")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args()
    results = {}
    for name in args.sets or ["demo", "labelled", "holdout"]:
        started = time.perf_counter()
        found = figures(write_site(keyword_set(name)))
        report(name, found, args.sample, time.perf_counter() - started)
        results[name] = found
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
