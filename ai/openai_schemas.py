"""What the `openai` provider asks a chat model for: the system prompts and the JSON reply schemas.

Each prompt spells out the one JSON object the model must answer with; the matching pydantic
model validates that answer before `ai.openai_replies` checks its content and converts it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# --- reply schemas -------------------------------------------------------------------------------------------


class ClusterItem(BaseModel):
    name: str = Field(min_length=1)
    description: str = ""
    keyword_ids: list[int] = Field(min_length=1)
    existing_id: int | None = None


class ClusterReply(BaseModel):
    clusters: list[ClusterItem] = Field(min_length=1)


class SectionItem(BaseModel):
    h2: str = Field(min_length=1)
    h3s: list[str] = []


class IdeaItem(BaseModel):
    title: str = Field(min_length=1)
    content_type: str = Field(min_length=1)
    primary_keyword: str = ""
    target_keywords: list[str] = []
    outline: list[SectionItem] = Field(min_length=1)
    description: str = ""


class IdeasReply(BaseModel):
    ideas: list[IdeaItem] = Field(min_length=1)


class ArticleReply(BaseModel):
    title: str = Field(min_length=1)
    meta_title: str = Field(min_length=1)
    meta_description: str = Field(min_length=1)
    slug: str = ""
    markdown: str = Field(min_length=1)


class SectionPrompt(BaseModel):
    section: str = Field(min_length=1)
    prompt: str = Field(min_length=1)


class PromptsReply(BaseModel):
    featured: str = Field(min_length=1)
    in_article: list[SectionPrompt] = Field(min_length=1)


# --- system prompts ------------------------------------------------------------------------------------------

_JSON_ONLY = "Answer with one JSON object only, exactly in this shape, no prose and no code fences:\n"

CLUSTER_PROMPT = (
    "You group SEO keywords into topical clusters. The user sends JSON with `keywords` (id, text) and "
    "`existing_clusters` (id, name, sample keywords). Put every keyword id in exactly one cluster. When keywords "
    "belong to an existing cluster, answer that cluster with its `existing_id`; otherwise set `existing_id` to null "
    "and give a short new name (2-5 words).\n" + _JSON_ONLY
    + '{"clusters": [{"name": "string", "description": "one sentence", "keyword_ids": [1, 2], '
    '"existing_id": null}]}'
)
IDEAS_PROMPT = (
    "You plan blog articles for one keyword cluster. The user sends JSON with the cluster (name, description, "
    "keywords) and `taken_titles`. Propose one article idea per distinct search intent among the keywords (keywords "
    "a searcher would answer with the same article are one intent; a cluster of one keyword gets one idea), at "
    "most 5, none with a title in `taken_titles`. `primary_keyword` is the one cluster keyword the idea targets, "
    "different for every idea. "
    "`content_type` is one of guide, how-to, listicle, comparison, review, checklist. Each outline has 5-8 H2 "
    "sections with 0-4 H3s each.\n" + _JSON_ONLY
    + '{"ideas": [{"title": "string", "content_type": "guide", "primary_keyword": "string", '
    '"target_keywords": ["string"], '
    '"outline": [{"h2": "string", "h3s": ["string"]}], "description": "one or two sentences"}]}'
)
CONTENT_PROMPT = (
    "You write complete, helpful blog articles of about 2,000-2,500 words in markdown. The user sends JSON with "
    "the idea (title, content_type, target_keywords, outline, description, cluster_name). Follow the outline: "
    "one '# ' title line, an introduction, every H2 as '## ' and every H3 as '### ', paragraphs separated by blank "
    "lines, lists as '- ' lines. meta_title at most 60 characters, meta_description at most 160 characters, slug "
    "lowercase words joined by hyphens.\n" + _JSON_ONLY
    + '{"title": "string", "meta_title": "string", "meta_description": "string", "slug": "string", '
    '"markdown": "string"}'
)
PROMPTS_PROMPT = (
    "You write prompts for an image model to illustrate a blog article. The user sends JSON with the article's "
    "title, target keywords, H2 sections and markdown. Give one featured image prompt for the whole article and "
    "3 to 5 in-article prompts, each for one of the given sections (use the section text exactly). Each prompt is "
    "one descriptive sentence: subject, style, mood, colours; no text in the image.\n" + _JSON_ONLY
    + '{"featured": "string", "in_article": [{"section": "string", "prompt": "string"}]}'
)
