"""Quality figures of the offline provider on fixed inputs: clustering, ideas, articles, images."""

from __future__ import annotations

import asyncio
import io
import re
import statistics
import xml.etree.ElementTree as ElementTree
from itertools import combinations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from ai.base import (
    ArticleIn,
    ArticleOut,
    ClusterIn,
    ClusterOut,
    ExistingCluster,
    IdeaIn,
    IdeaOut,
    InvalidAIOutput,
    KeywordIn,
)
from ai.intents import intents
from ai.local import LocalProvider
from ai.local_ideas import CONTENT_TYPES
from ai.local_plan import content_type_for
from ai.local_text import sentence_subject
from shared.demo_data import DEMO_TOPICS, demo_keywords

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019-][A-Za-z0-9]+)*")
provider = LocalProvider()


def run(coro):  # type: ignore[no-untyped-def]
    """Run one provider call; the provider is synchronous underneath, so no shared loop is needed."""
    return asyncio.run(coro)


def simulate_pipeline(pairs: list[tuple[str, str]], batch_size: int = 20, sample: int = 12) -> list[int]:
    """Feed keywords in batches while the site's clusters accumulate, as stage 1 does (it shows
    `sample` members per existing cluster, and a new cluster named like an existing one joins it)."""
    clusters: dict[int, list[str]] = {}
    names: dict[str, int] = {}
    label: dict[int, int] = {}
    for start in range(0, len(pairs), batch_size):
        batch = [KeywordIn(i, text) for i, (text, _) in enumerate(pairs[start : start + batch_size], start)]
        existing = [ExistingCluster(cid, name, tuple(clusters[cid][:sample])) for name, cid in names.items()]
        out = run(provider.cluster_keywords(batch, existing))
        assert_partition(out, [k.id for k in batch])
        for result in out:
            if result.existing_id is not None:
                assert names[result.name] == result.existing_id
            cid = names.setdefault(result.name, len(names) + 1)
            clusters.setdefault(cid, [])
            for kid in result.keyword_ids:
                clusters[cid].append(pairs[kid][0])
                label[kid] = cid
    return [label[i] for i in range(len(pairs))]


def assert_partition(out: list[ClusterOut], ids: list[int]) -> None:
    assigned = [kid for result in out for kid in result.keyword_ids]
    assert sorted(assigned) == sorted(ids)
    assert all(result.name.strip() and result.description.strip() for result in out)


def ideas_for(topic: str, cid: int = 1, taken: frozenset[str] = frozenset()) -> tuple[ClusterIn, list[IdeaOut]]:
    cluster = ClusterIn(cid, topic.title(), f"Searches about {topic}", tuple(DEMO_TOPICS[topic]))
    return cluster, run(provider.generate_ideas(cluster, taken))


def idea_in(idea: IdeaOut, cluster: ClusterIn, iid: int = 1) -> IdeaIn:
    return IdeaIn(iid, idea.title, idea.content_type, idea.target_keywords, idea.outline, idea.description,
                  cluster.name)


def sentences(markdown: str) -> set[str]:
    """Body sentences (headings excluded, list items included), whitespace-normalised."""
    found = set()
    for line in markdown.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", line.removeprefix("- ")):
            if sentence.strip():
                found.add(" ".join(sentence.split()))
    return found


@pytest.fixture(scope="module")
def articles() -> list[tuple[IdeaIn, ArticleOut]]:
    """Six articles of different ideas: three from each of two clusters."""
    made = []
    for cid, topic in enumerate(("trail running shoes", "sourdough baking"), start=1):
        cluster, ideas = ideas_for(topic, cid)
        for idea in ideas[:3]:
            idea = idea_in(idea, cluster, len(made) + 1)
            made.append((idea, run(provider.generate_content(idea))))
    return made


# ---------------------------------------------------------------------------------------------- clustering


def test_batched_clustering_matches_topics() -> None:
    pairs = demo_keywords()
    assert adjusted_rand_score([t for _, t in pairs], simulate_pipeline(pairs)) >= 0.8


def test_batched_clustering_by_words_alone_when_the_model_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from ai import embeddings

    monkeypatch.setenv(embeddings.DISABLE_ENV, "off")
    monkeypatch.setattr(embeddings, "_EMBEDDER", None)
    pairs = demo_keywords()
    assert adjusted_rand_score([t for _, t in pairs], simulate_pipeline(pairs)) >= 0.8


def test_one_shot_clustering_matches_topics() -> None:
    pairs = demo_keywords()
    out = run(provider.cluster_keywords([KeywordIn(i, k) for i, (k, _) in enumerate(pairs)], []))
    assert_partition(out, list(range(len(pairs))))
    label = {kid: n for n, result in enumerate(out) for kid in result.keyword_ids}
    # by meaning and words 0.85, by words alone 0.91
    assert adjusted_rand_score([t for _, t in pairs], [label[i] for i in range(len(pairs))]) >= 0.8
    assert "Trail Running Shoes" in {result.name for result in out}


def test_keywords_join_existing_clusters_and_new_topics_form_new_ones() -> None:
    existing = [
        ExistingCluster(7, "Sourdough Baking", tuple(DEMO_TOPICS["sourdough baking"][:10])),
        ExistingCluster(9, "Home Solar Panels", tuple(DEMO_TOPICS["home solar panels"][:10])),
    ]
    batch = [KeywordIn(1, "sourdough starter smells like acetone"), KeywordIn(2, "solar panel warranty length"),
             KeywordIn(3, "beekeeping for beginners"), KeywordIn(4, "how to start beekeeping"),
             KeywordIn(5, "beekeeping equipment list")]
    out = run(provider.cluster_keywords(batch, existing))
    assert_partition(out, [1, 2, 3, 4, 5])
    by_id = {kid: result for result in out for kid in result.keyword_ids}
    assert (by_id[1].existing_id, by_id[1].name) == (7, "Sourdough Baking")
    assert (by_id[2].existing_id, by_id[2].name) == (9, "Home Solar Panels")
    assert by_id[3] is by_id[4] is by_id[5]
    assert by_id[3].existing_id is None and "Beekeeping" in by_id[3].name


def test_clustering_is_deterministic_and_handles_edge_cases() -> None:
    batch = [KeywordIn(i, k) for i, (k, _) in enumerate(demo_keywords(40))]
    assert run(provider.cluster_keywords(batch, [])) == run(provider.cluster_keywords(batch, []))
    assert run(provider.cluster_keywords([], [])) == []
    odd = run(provider.cluster_keywords([KeywordIn(1, "???"), KeywordIn(2, "the best")], []))
    assert sorted(kid for result in odd for kid in result.keyword_ids) == [1, 2]


def test_a_batch_against_fifty_clusters_assigns_every_keyword_once() -> None:
    """Its speed is a bench figure (`automation bench`), not a timed assertion."""
    texts = [k for k, _ in demo_keywords()] * 2
    existing = [ExistingCluster(i, f"Cluster {i}", tuple(texts[20 + i * 12 : 32 + i * 12])) for i in range(50)]
    batch = [KeywordIn(i, text) for i, text in enumerate(texts[:20])]
    results = run(provider.cluster_keywords(batch, existing))
    assert sorted(kid for result in results for kid in result.keyword_ids) == list(range(20))
    assert all(r.existing_id is None or 0 <= r.existing_id < 50 for r in results)


# ---------------------------------------------------------------------------------------------- ideas


@pytest.mark.parametrize("topic", ["trail running shoes", "budget travel in japan", "ev home charging"])
def test_ideas_are_varied_complete_and_untaken(topic: str) -> None:
    cluster, ideas = ideas_for(topic)
    assert len(ideas) == len(intents(cluster.keywords))  # one idea per search intent
    assert len({idea.primary_keyword for idea in ideas}) == len(ideas)
    titles = [idea.title.casefold() for idea in ideas]
    assert len(set(titles)) == len(titles)
    assert len({idea.content_type for idea in ideas}) >= 4  # the cluster's keywords ask for different things
    for idea in ideas:
        assert idea.primary_keyword in cluster.keywords and idea.target_keywords[0] == idea.primary_keyword
        assert idea.content_type in CONTENT_TYPES
        assert idea.content_type == content_type_for(idea.primary_keyword)  # the keyword decides, not a rotation
        assert idea.target_keywords and set(idea.target_keywords) <= set(cluster.keywords)
        assert len(idea.outline) >= 4
        assert all(len(section.h3s) <= 3 for section in idea.outline)
        assert idea.description.endswith(".") and ". " not in idea.description
        assert "{" not in idea.title and "[" not in idea.title


def test_ideas_avoid_taken_titles_case_insensitively() -> None:
    _, first = ideas_for("meal prep")
    taken = frozenset(idea.title.upper() for idea in first)
    _, second = ideas_for("meal prep", taken=taken)
    assert len(second) == len(first)
    assert not {idea.title.casefold() for idea in second} & {t.casefold() for t in taken}


def test_ideas_are_deterministic() -> None:
    assert ideas_for("beginner guitar")[1] == ideas_for("beginner guitar")[1]


# ---------------------------------------------------------------------------------------------- articles


def test_articles_hit_the_length_and_meta_limits(articles: list[tuple[IdeaIn, ArticleOut]]) -> None:
    """Drafts of 600-1,700 words by content type (an answer is shorter than a guide), not padded to 2,500."""
    for _, article in articles:
        words = len(WORD.findall(article.markdown))
        assert 550 <= words <= 1800
        assert abs(article.word_count - words) <= 10
        assert 0 < len(article.meta_title) <= 60
        assert 0 < len(article.meta_description) <= 160
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", article.slug)


def test_articles_follow_the_outline_with_faq_and_conclusion(articles: list[tuple[IdeaIn, ArticleOut]]) -> None:
    for idea, article in articles:
        headings = [line for line in article.markdown.splitlines() if line.startswith("#")]
        assert headings[0] == f"# {idea.title}"
        faq_heading, conclusion_heading = article.sections[-2:]
        assert "Questions" in faq_heading  # named after the subject: "Frequently Asked Questions About ..."
        expected = [section.h2 for section in idea.outline] + [faq_heading, conclusion_heading]
        assert list(article.sections) == expected
        assert [h[3:] for h in headings if h.startswith("## ")] == expected
        position = 0
        for section in idea.outline:
            for heading in (f"## {section.h2}", *(f"### {h3}" for h3 in section.h3s)):
                position = headings.index(heading, position)
        faq = headings.index(f"## {faq_heading}")
        questions = headings[faq + 1 : headings.index(f"## {conclusion_heading}")]
        assert len(questions) >= 3 and all(q.startswith("### ") and q.endswith("?") for q in questions)
        assert article.markdown.rstrip().split(f"## {conclusion_heading}")[1].strip()


def test_articles_have_wellformed_html_and_no_placeholders(articles: list[tuple[IdeaIn, ArticleOut]]) -> None:
    for _, article in articles:
        root = ElementTree.fromstring(f"<article>{article.html}</article>")
        tags = {element.tag for element in root}
        assert {"h1", "h2", "h3", "p", "ul"} <= tags
        assert [e.text for e in root if e.tag == "h2"] == list(article.sections)
        for text in (article.markdown, article.html):
            assert not re.search(r"lorem|ipsum|TODO|placeholder|\{\w*\}|\[[^\]]*\|", text, re.IGNORECASE)


def test_articles_about_different_ideas_share_few_sentences(articles: list[tuple[IdeaIn, ArticleOut]]) -> None:
    for (_, a), (_, b) in combinations(articles, 2):
        first, second = sentences(a.markdown), sentences(b.markdown)
        assert len(first & second) / min(len(first), len(second)) <= 0.10


def test_articles_are_deterministic(articles: list[tuple[IdeaIn, ArticleOut]]) -> None:
    """Their speed is printed by `automation bench`, not asserted here."""
    idea, article = articles[0]
    again = [run(provider.generate_content(idea)) for _ in range(5)]
    assert all(copy == article for copy in again)


def test_an_idea_without_outline_still_gets_a_full_article() -> None:
    idea = IdeaIn(9, "Raised Bed Gardening Basics", "guide", ("raised bed vegetable garden",), (), "", "Raised Beds")
    article = run(provider.generate_content(idea))
    assert len(article.sections) >= 5 and article.word_count >= 550
    assert article.meta_description


def test_an_idea_without_title_is_invalid() -> None:
    with pytest.raises(InvalidAIOutput):
        run(provider.generate_content(IdeaIn(1, "  ", "guide", (), (), "", "x")))


# ---------------------------------------------------------------------------------------------- images


def test_image_prompts_come_from_the_article_sections(articles: list[tuple[IdeaIn, ArticleOut]]) -> None:
    for idea, article in articles:
        article_in = ArticleIn(1, article.title, article.markdown, article.sections, idea.target_keywords)
        prompts = run(provider.generate_image_prompts(article_in))
        featured, body = prompts[0], prompts[1:]
        assert (featured.kind, featured.position, featured.section) == ("featured", 0, None)
        assert article.title in featured.prompt
        assert 3 <= len(body) <= 5
        assert [p.position for p in body] == list(range(1, len(body) + 1))
        for prompt in body:
            assert prompt.kind == "in_article"
            assert prompt.section in article.sections
            assert prompt.section not in ("Frequently Asked Questions", "Conclusion")
            assert sentence_subject(prompt.section) in prompt.prompt
            assert prompt.prompt.endswith(".")


def test_in_article_prompt_count_averages_about_four() -> None:
    sections = tuple(f"Section {n}" for n in range(8))
    counts = [len(run(provider.generate_image_prompts(ArticleIn(i, f"Title {i}", "", sections, ())))) - 1
              for i in range(60)]
    assert set(counts) == {3, 4, 5}
    assert 3.6 <= statistics.mean(counts) <= 4.4


def test_images_are_real_pngs_of_the_asked_size() -> None:
    prompt = "A flat illustration of trail running shoes on a rocky path."
    image = run(provider.generate_image(prompt, 512, 288))
    assert image.png.startswith(PNG_SIGNATURE)
    decoded = Image.open(io.BytesIO(image.png))
    assert decoded.size == (512, 288) == (image.width, image.height)
    pixels = np.asarray(decoded.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 100  # an illustration, not a flat fill
    assert run(provider.generate_image(prompt, 512, 288)) == image
    assert run(provider.generate_image("A watercolour of sourdough loaves.", 512, 288)).png != image.png


def test_images_reject_bad_input() -> None:
    with pytest.raises(InvalidAIOutput):
        run(provider.generate_image("something", 0, 288))
    with pytest.raises(InvalidAIOutput):
        run(provider.generate_image("  ", 512, 288))


@pytest.mark.parametrize(("keywords", "expected"), [
    (("espresso grind size",), ["espresso grind size"]),
    (("best espresso grinders", "espresso grinder guide", "espresso grinder"), ["best espresso grinders"]),
    (("how to descale a kettle", "kettle descaling", "electric kettle reviews"),
     ["how to descale a kettle", "kettle descaling", "electric kettle reviews"]),
])
def test_keywords_that_ask_for_one_article_are_one_intent(keywords: tuple[str, ...], expected: list[str]) -> None:
    assert intents(keywords) == expected


def test_a_one_keyword_cluster_gets_one_idea_that_targets_it() -> None:
    cluster = ClusterIn(7, "Rate Lock", "", ("rate lock period",))
    ideas = run(provider.generate_ideas(cluster, frozenset()))
    assert [(i.primary_keyword, i.target_keywords) for i in ideas] == [("rate lock period", ("rate lock period",))]

