"""The `rich` filter: a body is escaped before any formatting, and formats like the page's text.js."""

import pytest

from choir.templatetags.choir_text import format_text


@pytest.mark.parametrize(
    ("body", "html"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("**bold** and *it* and _it_", "<strong>bold</strong> and <em>it</em> and <em>it</em>"),
        ("`<b>x</b>` then **<i>**", "<code>&lt;b&gt;x&lt;/b&gt;</code> then <strong>&lt;i&gt;</strong>"),
        ("```py\nif a < b:\n    pass\n```", "<pre><code>if a &lt; b:\n    pass</code></pre>"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("`**not bold**`", "<code>**not bold**</code>"),
        (
            "see https://example.com/a_(b), ok",
            'see <a href="https://example.com/a_(b)" rel="noopener noreferrer nofollow" target="_blank">'
            "https://example.com/a_(b)</a>, ok",
        ),
        ('https://x.org/"onmouseover=alert(1)', '<a href="https://x.org/" rel="noopener noreferrer nofollow" target="_blank">https://x.org/</a>&quot;onmouseover=alert(1)'),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("hi @Ann. and ann@example.org", 'hi <span class="mention me">@Ann.</span> and ann@example.org'),
        ("@bob <b>", '<span class="mention">@bob</span> &lt;b&gt;'),
    ],
)
def test_rich_escapes_then_formats(body, html):
    assert format_text(body, "ann") == html


def test_the_room_page_renders_history_through_it(client, lobby, make_user):
    from choir import services
    from choir.access import Singer

    ann = make_user("ann")
    services.message_post(room=lobby, singer=Singer(user=ann, name="ann"), body="**hi** <img src=x onerror=alert(1)>")
    page = client.get("/rooms/lobby/").content.decode()
    assert "<strong>hi</strong> &lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img src=x" not in page
