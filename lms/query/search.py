"""Full-text search: user text into a MATCH ... AGAINST string and REGEXPs; the operators of
boolean mode in the text are never passed through."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lms.query.errors import QueryError

MAX_Q = 512
"""Characters of a full-text search."""
MAX_FT_TERMS = 16
"""Words and phrases of one full-text search; each one is another index lookup."""

# InnoDB's built-in full-text stopword list (MariaDB and MySQL 8): these words are not indexed,
# so a required `+the` would match nothing. They still count inside a "quoted phrase".
INNODB_STOPWORDS = frozenset(
    {
        "a", "about", "an", "are", "as", "at", "be", "by", "com", "de", "en", "for", "from",
        "how", "i", "in", "is", "it", "la", "of", "on", "or", "that", "the", "this", "to",
        "was", "what", "when", "where", "who", "will", "with", "und", "www",
    }
)  # fmt: skip
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class TextSearch:
    """A full-text search, as the database runs it.

    `against` is the MATCH ... AGAINST (... IN BOOLEAN MODE) string: it finds candidates
    through the FULLTEXT index. `patterns` are REGEXPs every matching payload satisfies (a
    word as a whole word, a phrase as its words separated by non-word characters, case-
    insensitive): they check phrases (faster than InnoDB's own phrase check, which re-reads
    every candidate) and let a search run without the FULLTEXT index, along a time index.
    They exist only when every word is ASCII; otherwise `patterns` is empty and `against`
    holds "quoted" phrases for InnoDB to check.
    """

    against: str
    patterns: tuple[str, ...]


def parse_search(text: str, min_token: int = 3, max_token: int = 84) -> TextSearch:
    """Turn user text into a TextSearch: every word required, "quoted text" a phrase.

    Operators of boolean mode (+ - < > ( ) ~ * @ " and so on) in the input are never passed
    through: the text is cut into words (letters, digits, _) and only those are used. Words
    InnoDB does not index (shorter than `min_token`, longer than `max_token`, stopwords) are
    dropped outside phrases, where they would match nothing. Raises QueryError if nothing
    is left.
    """
    if len(text) > MAX_Q:
        raise QueryError("q", f"has {len(text)} characters, allowed at most {MAX_Q}")

    def indexed(word: str) -> bool:
        return min_token <= len(word) <= max_token and word.lower() not in INNODB_STOPWORDS

    terms: list[tuple[str, ...]] = []  # a word is a 1-tuple, a phrase ("", *words)
    for index, part in enumerate(text.split('"')):
        words = _WORD.findall(part)
        if index % 2:  # inside quotes (an unclosed quote runs to the end)
            if any(indexed(w) for w in words):
                terms.append(("", *words) if len(words) > 1 else (words[0],))
        else:
            terms.extend((w,) for w in words if indexed(w))
    terms = list(dict.fromkeys(terms))
    if not terms:
        raise QueryError(
            "q",
            f"has no searchable word: words of fewer than {min_token} characters and common"
            " stopwords (the, to, of, ...) are not indexed; quote them inside a phrase with"
            ' a longer word, e.g. "failed to connect"',
        )
    if len(terms) > MAX_FT_TERMS:
        raise QueryError("q", f"has {len(terms)} words and phrases, allowed at most {MAX_FT_TERMS}")
    ascii_only = all(word.isascii() for term in terms for word in term)
    against: list[str] = []
    patterns: list[str] = []
    for term in terms:
        term_words = term[1:] if term[0] == "" else term
        if len(term_words) == 1:
            against.append(f"+{term_words[0]}")
        elif ascii_only:
            against.extend(f"+{w}" for w in term_words if indexed(w))
        else:
            against.append('+"' + " ".join(term_words) + '"')
        if ascii_only:
            patterns.append(r"(?i)\b" + r"\W+".join(term_words) + r"\b")
    return TextSearch(" ".join(dict.fromkeys(against)), tuple(patterns) if ascii_only else ())
