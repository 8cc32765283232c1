"""Narrowing what a batch shows the AI to the site's rows that share words with it, so the
size of a prompt stays flat as a site grows to thousands of rows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVarTuple

from sqlalchemy import Select, false, func

Ts = TypeVarTuple("Ts")

def significant_words(texts: Iterable[str], *, min_length: int = 4, prefix: int = 6) -> list[str]:
    """The words of `texts` worth matching on, cut to a prefix so plurals and -ing forms match;
    letters and digits only, so they are safe inside a regular expression."""
    return sorted({word[:prefix] for text in texts for word in re.findall(r"[^\W_]+", text.casefold())
                   if len(word) >= min_length})


def closest(query: Select[*Ts], text_column: Any, words: list[str], limit: int) -> Select[*Ts]:
    """`query` narrowed to the rows whose `text_column` contains any of `words`, those with the
    most matches first, at most `limit`: common words (a brand, "best") match a large part of a
    big site, and a prompt must stay bounded all the same. One case-insensitive regular expression
    per row (twice as fast as an ILIKE per word; a trigram index serves it when it is selective).
    Ties: add an ORDER BY after this one."""
    if not words:
        return query.where(false())
    alternation = "|".join(words)
    return (query.where(text_column.op("~*")(alternation))
            .order_by(func.regexp_count(text_column, alternation, 1, "i").desc()).limit(limit))
