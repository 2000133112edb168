"""What ``millstream sql`` was given: one statement or several, and whether it returns rows.

A small lexer, not a parser: it knows ClickHouse's quoting ('strings' with backslash escapes and
doubled quotes, "identifiers", `identifiers`) and comments (``-- …``, ``# …``, ``/* … */``), so a
``;`` or a keyword inside them is not mistaken for one outside. ClickHouse itself parses the statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sinks.exceptions import SinkError

# First keywords of statements that return rows (ClickHouse also accepts FROM before SELECT).
READ_KEYWORDS = frozenset(
    {"SELECT", "WITH", "FROM", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS", "CHECK"}
)
_WORD = re.compile(r"[A-Za-z_]+")
_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+[A-Za-z]\w*\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    text: str  # as given, without the trailing ';'
    code: str  # the same with comments blanked out and string contents removed (for classifying)

    @property
    def keyword(self) -> str:
        """The first keyword, upper-case (an opening parenthesis skipped), '' if none."""
        m = _WORD.search(self.code.lstrip("( \t\r\n"))
        return m.group(0).upper() if m else ""

    @property
    def returns_rows(self) -> bool:
        return self.keyword in READ_KEYWORDS

    @property
    def has_format_clause(self) -> bool:
        return _FORMAT_CLAUSE.search(self.code) is not None


def split(sql: str) -> list[Statement]:
    """The statements of ``sql`` separated by ``;`` outside quotes and comments (empty ones left out)."""
    out: list[Statement] = []
    code: list[str] = []  # the current statement's characters as classified (see Statement.code)
    start, i, n = 0, 0, len(sql)

    def close(end: int) -> None:
        text, c = sql[start:end].strip(), "".join(code).strip()
        if c:
            out.append(Statement(text, c))

    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # a doubled quote stands for itself
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                msg = f"unterminated {ch}…{ch} starting at character {i + 1}"
                raise SinkError(msg)
            code.append(ch * 2)
            i = j + 1
        elif sql.startswith("--", i) or ch == "#":
            j = sql.find("\n", i)
            i = n if j < 0 else j
            code.append(" ")
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                msg = f"unterminated /* comment starting at character {i + 1}"
                raise SinkError(msg)
            i = j + 2
            code.append(" ")
        elif ch == ";":
            close(i)
            start, code = i + 1, []
            i += 1
        else:
            code.append(ch)
            i += 1
    close(n)
    return out


def one_statement(sql: str) -> Statement:
    """The single statement in ``sql``; a clear error for none, several, or a FORMAT clause."""
    statements = split(sql)
    if not statements:
        msg = "no SQL statement given"
        raise SinkError(msg)
    if len(statements) > 1:
        msg = (
            f"one statement at a time: the text holds {len(statements)} statements separated by ';' "
            f"(the second begins {statements[1].text[:40]!r}); run them one by one"
        )
        raise SinkError(msg)
    statement = statements[0]
    if statement.has_format_clause:
        msg = "leave out the FORMAT clause: the output format is chosen with --format table|csv|json"
        raise SinkError(msg)
    return statement
