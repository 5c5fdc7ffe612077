"""MkDocs hook: put the reference pages made from the code where a page says <!-- reference: NAME -->."""

import re

from dcloop import reference

MARKER = re.compile(r"<!-- reference: (\w+) -->")


def on_page_markdown(markdown, **kwargs):
    return MARKER.sub(lambda m: reference.render(m.group(1)), markdown)
