"""Check a built documentation site in headless Chromium: every page, every internal link, the search.

The site (``mkdocs build``) is served from its folder on 127.0.0.1 and every
HTML page is opened in Chromium with the offline flags of ``browser_check.py``
(a dead proxy for everything outside the loopback). Per page, the checks of
:class:`browser_check.PageReport` apply (images load, no external resources,
no console errors, no HTTP errors, no same-page anchor without a target); then
every link to the site itself must point at a file that exists and, with a
``#fragment``, at an element id on the target page. The search check types a
query into Material's search box and waits for results.

Used by ``tests/test_docs_site.py``; also a command-line check of a built site::

    python tests/docs_browser_check.py site [--query relevance]

prints a JSON report and exits 1 when a page, a link or the search is broken.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from browser_check import Chromium, DevToolsError, PageReport, serve_directory

# In the page: every link (resolved), and every element id (the targets of #fragments).
_LINKS_SCRIPT = r"""
(() => ({
  links: Array.from(document.querySelectorAll('a[href]')).map((a) => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map((e) => e.id),
  math: document.querySelectorAll('math').length,
  raw_tex: (document.body.innerText.match(/\\\(|\\\[/g) || []).length,
  title: document.title,
}))()
"""

# In the page: type into Material's search box and wait for result items.
_SEARCH_SCRIPT = r"""
(async (query) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const input = document.querySelector('input[data-md-component="search-query"], input.md-search__input');
  if (!input) return {error: 'no search box on the page', results: []};
  const toggle = document.querySelector('#__search');
  if (toggle) { toggle.checked = true; toggle.dispatchEvent(new Event('change')); }
  input.focus();
  const t0 = performance.now();
  let items = [];
  while (performance.now() - t0 < 15000) {
    input.value = query;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    input.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true, key: 'n'}));
    await sleep(250);
    items = Array.from(document.querySelectorAll('.md-search-result__item'));
    if (items.length) break;
  }
  const meta = document.querySelector('.md-search-result__meta');
  return {
    error: null,
    meta: meta ? meta.innerText : '',
    results: items.map((li) => {
      const a = li.querySelector('a');
      const h = li.querySelector('h1, h2');
      return {href: a ? a.href : '', title: h ? h.innerText.trim() : ''};
    }),
  };
})
"""


def site_pages(site_dir: str | Path) -> list[str]:
    """Every HTML page of a built site, relative to ``site_dir`` (POSIX paths), 404.html left out.

    404.html is served by a web server for any missing path, so its links are absolute to the site
    root; it is not a page a reader navigates to.
    """
    root = Path(site_dir)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html") if p.name != "404.html")


def _evaluate(browser: Chromium, expression: str, timeout: float = 30.0) -> dict:
    evaluated = browser.devtools.call(  # type: ignore[union-attr]
        "Runtime.evaluate",
        {"expression": expression, "awaitPromise": True, "returnByValue": True, "timeout": int(timeout * 1000)},
        timeout=timeout + 5,
    )
    if "exceptionDetails" in evaluated:
        raise DevToolsError(f"page script failed: {evaluated['exceptionDetails']}")
    return evaluated["result"]["value"]


@dataclass
class SiteReport:
    """What opening every page showed; :meth:`problems` lists everything that is wrong."""

    base: str
    pages: dict[str, PageReport] = field(default_factory=dict)
    links: dict[str, list[str]] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)
    math: dict[str, int] = field(default_factory=dict)
    raw_tex: dict[str, int] = field(default_factory=dict)
    link_problems: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = [f"{page}: {p}" for page, report in self.pages.items() for p in report.problems()]
        out += [f"{page}: {n} unrendered formula delimiter(s)" for page, n in self.raw_tex.items() if n]
        return out + self.link_problems

    def to_dict(self) -> dict:
        return {
            "base": self.base,
            "pages": sorted(self.pages),
            "links_checked": sum(len(v) for v in self.links.values()),
            "problems": self.problems(),
        }


def _target_path(base: str, url: str) -> tuple[str, str] | None:
    """(page path relative to the site, fragment) for a link into the site, ``None`` for other links."""
    if not url.startswith(base):
        return None
    parts = urlsplit(url)
    path = unquote(parts.path)[len(urlsplit(base).path) :]
    if path == "" or path.endswith("/"):
        path += "index.html"
    return posixpath.normpath(path), unquote(parts.fragment)


def check_links(report: SiteReport, site_dir: str | Path) -> None:
    """Fill ``report.link_problems``: links to missing files or to ids their page does not have."""
    root = Path(site_dir)
    for page, links in report.links.items():
        for url in links:
            target = _target_path(report.base, url)
            if target is None:
                continue  # mailto:, the theme's credit link and other sites: not ours to serve
            path, fragment = target
            file = root / path
            if file.is_dir():
                path, file = posixpath.join(path, "index.html"), file / "index.html"
            if not file.is_file():
                report.link_problems.append(f"{page}: broken link to {path} ({url})")
            elif fragment and path.endswith(".html"):
                ids = report.ids.get(path)
                if ids is None:  # a page outside the crawl: read its ids from the file
                    ids = re.findall(r'\sid="([^"]+)"', file.read_text(encoding="utf-8", errors="replace"))
                    report.ids[path] = ids
                if fragment not in ids:
                    report.link_problems.append(f"{page}: link to a missing anchor {path}#{fragment}")


def check_site(
    browser: Chromium, base: str, site_dir: str | Path, pages: list[str] | None = None, timeout: float = 30.0
) -> SiteReport:
    """Open every page of ``site_dir`` (served at ``base``) and check pages and internal links."""
    report = SiteReport(base)
    for page in pages if pages is not None else site_pages(site_dir):
        report.pages[page] = browser.check_page(base + page, timeout=timeout, settle=0.1)
        facts = _evaluate(browser, _LINKS_SCRIPT, timeout)
        report.links[page] = facts["links"]
        report.ids[page] = facts["ids"]
        report.math[page] = int(facts["math"])
        report.raw_tex[page] = int(facts["raw_tex"])
    check_links(report, site_dir)
    return report


def search(browser: Chromium, url: str, query: str, timeout: float = 30.0) -> dict:
    """Open ``url``, type ``query`` into the search box; ``{"results": [{"href", "title"}], "meta", "error"}``."""
    browser.check_page(url, timeout=timeout, settle=0.1)
    return _evaluate(browser, f"({_SEARCH_SCRIPT})({json.dumps(query)})", timeout)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site_dir", type=Path, help="a built site (mkdocs build -d DIR)")
    parser.add_argument("--query", default="relevance", help="a search query that must find something")
    args = parser.parse_args(argv)
    if not (args.site_dir / "index.html").is_file():
        parser.error(f"{args.site_dir}/index.html not found (build the site first: make docs)")
    started = time.monotonic()
    with serve_directory(args.site_dir) as (base, _server), Chromium() as browser:
        report = check_site(browser, base, args.site_dir)
        found = search(browser, base + "index.html", args.query)
    summary = report.to_dict()
    summary["search"] = found
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary, indent=2))
    return 1 if report.problems() or not found.get("results") else 0


if __name__ == "__main__":
    sys.exit(main())
