"""Template filters for message bodies: `rich` formats text as the page's script does (text.js).

Every piece of the body is escaped before it is wrapped in markup, so a body
is never read as HTML; only http(s) addresses become links. The rules are
those of choir/static/choir/text.js, so a server-rendered page (a permalink,
a page without JavaScript) reads like a live one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

URL = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = re.compile(r"[.,;:!?'\"\]}>]+$")
CODE_BLOCK = re.compile(r"```(?:[\w+-]*\n)?([\s\S]*?)```")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
BOLD = re.compile(r"\*\*(?=\S)([\s\S]*?\S)\*\*")
ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![\w*])|(?<![\w_])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w_])")
MENTION = re.compile(r"(?<![\w.@+-])@([\w.@+-]{1,150})")

Found = Callable[[re.Match[str]], "tuple[str, int] | None"]


def _split(text: str, pattern: re.Pattern[str], found: Found, rest: Callable[[str], str]) -> str:
    out, last = [], 0
    for match in pattern.finditer(text):
        taken = found(match)
        if taken is None:
            continue
        html, length = taken
        out += [rest(text[last : match.start()]), html]
        last = match.start() + length
    out.append(rest(text[last:]))
    return "".join(out)


def _trim_address(raw: str) -> str:
    url = TRAILING.sub("", raw)
    while url.endswith(")") and url.count("(") < url.count(")"):
        url = TRAILING.sub("", url[:-1])
    return url


def mentioned_name(raw: str) -> str:
    return raw.rstrip(".@+-").lower()


def _mentions(text: str, me: str) -> str:
    def found(match: re.Match[str]) -> tuple[str, int]:
        mine = " me" if me and mentioned_name(match[1]) == me.lower() else ""
        return f'<span class="mention{mine}">{escape(match[0])}</span>', len(match[0])

    return _split(text, MENTION, found, escape)


def _emphasis(text: str, me: str) -> str:
    def bold(match: re.Match[str]) -> tuple[str, int]:
        return f"<strong>{_emphasis(match[1], me)}</strong>", len(match[0])

    def italic(match: re.Match[str]) -> tuple[str, int]:
        return f"<em>{_mentions(match[1] or match[2], me)}</em>", len(match[0])

    return _split(text, BOLD, bold, lambda plain: _split(plain, ITALIC, italic, lambda rest: _mentions(rest, me)))


def _links(text: str, me: str) -> str:
    def found(match: re.Match[str]) -> tuple[str, int] | None:
        url = _trim_address(match[0])
        if not url:
            return None
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            return escape(url), len(url)
        link = f'<a href="{escape(url)}" rel="noopener noreferrer nofollow" target="_blank">{escape(url)}</a>'
        return link, len(url)

    return _split(text, URL, found, lambda plain: _emphasis(plain, me))


def _inline(text: str, me: str) -> str:
    return _split(
        text, INLINE_CODE, lambda m: (f"<code>{escape(m[1])}</code>", len(m[0])), lambda plain: _links(plain, me)
    )


def format_text(text: str, me: str = "") -> SafeString:
    """`text` as escaped HTML with light formatting; `me`'s mentions are marked."""

    def block(match: re.Match[str]) -> tuple[str, int]:
        code = match[1][:-1] if match[1].endswith("\n") else match[1]
        return f"<pre><code>{escape(code)}</code></pre>", len(match[0])

    return mark_safe(_split(text, CODE_BLOCK, block, lambda plain: _inline(plain, me)))  # every piece escaped above


@register.filter
def rich(text: str, me: str = "") -> SafeString:
    return format_text(str(text), str(me or ""))
