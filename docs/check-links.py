#!/usr/bin/env python3
"""Fails on a broken internal link in the built book or in the README.

    check-links.py BOOK_DIR README.md

In the book's HTML, every relative href must name a page that exists and, with a #fragment, an id
on that page. In the README (which GitHub renders from the tree), every relative link must name a
file in the tree, and a link to a chapter's anchor an id that the built chapter has. Links out of
the book (http:, https:, mailto:) are not followed: the check runs offline.
"""

import html.parser
import os
import re
import sys
import urllib.parse


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.hrefs = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])


def parse(path, cache={}):
    if path not in cache:
        p = Page()
        with open(path, encoding="utf-8") as f:
            p.feed(f.read())
        cache[path] = p
    return cache[path]


def external(href):
    return urllib.parse.urlparse(href).scheme in ("http", "https", "mailto")


def main():
    book, readme = sys.argv[1], sys.argv[2]
    broken = []
    pages = [
        os.path.join(d, f)
        for d, _, fs in os.walk(book)
        for f in fs
        if f.endswith(".html") and f not in ("print.html", "404.html", "toc.html")
    ]
    for page in sorted(pages):
        for href in parse(page).hrefs:
            if external(href):
                continue
            target, _, frag = href.partition("#")
            path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
            if os.path.isdir(path):
                path = os.path.join(path, "index.html")
            if not os.path.exists(path):
                broken.append(f"{os.path.relpath(page, book)}: {href}: no such page")
            elif frag and path.endswith(".html") and frag not in parse(path).ids:
                broken.append(f"{os.path.relpath(page, book)}: {href}: no #{frag} there")
    root = os.path.dirname(os.path.abspath(readme))
    with open(readme, encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    for href in re.findall(r"\]\(([^)\s]+)\)", text):
        if external(href):
            continue
        target, _, frag = href.partition("#")
        path = os.path.join(root, target)
        if target and not os.path.exists(path):
            broken.append(f"{readme}: {href}: no such file")
        elif frag and target.startswith("docs/src/") and target.endswith(".md"):
            built = os.path.join(book, target[len("docs/src/"):-3] + ".html")
            if frag not in parse(built).ids:
                broken.append(f"{readme}: {href}: no #{frag} in the built chapter")
    for b in broken:
        print("broken link:", b, file=sys.stderr)
    if broken:
        sys.exit(1)
    print(f"docs: {len(pages)} pages, every internal link resolves", file=sys.stderr)


if __name__ == "__main__":
    main()
