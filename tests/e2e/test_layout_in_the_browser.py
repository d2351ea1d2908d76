"""Nothing is clipped at 1366 px, and nothing but a table's own scroll box scrolls sideways at 390 px, on
every page (issue 13, item 9).

Every page tests/ui/test_pages.py names (the URL resolver's pages) is opened as maker, approver and
admin in Chromium at 1366 × 900 and at 390 × 844, with data that stretches tables: a solution with a
40-letter unique name, production deployments for the metrics, a succeeded promotion with its import log.
The measurement runs in the page:
- the document is no wider than the window;
- at 1366 px no element hides part of its content (clipped, or behind a scroll bar), and no button's
  label wraps onto a second line;
- at 390 px an element that hides content horizontally must be a table's own scroll box;
- no element reaches past the window's right edge unless it is inside a scroll box;
and the dashboard's release matrix keeps every stage's column on screen.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deployments.test_runner_fixtures import success_package
from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    browser,
    sign_in_with_password,
)
from tests.e2e.site import Site, open_page, site_fixture  # noqa: F401 - the fixture is found by name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WIDTHS = {"laptop": (1366, 900), "phone": (390, 844)}
LONG_NAME = "flowexcelgroupbyemailnotificationexample"
# Returns the problems of the page as sentences (empty when it fits). `wide`: the laptop rules.
MEASURE = """(wide) => {
  const problems = [];
  const viewport = document.documentElement.clientWidth;
  const describe = (el) => {
    let text = el.tagName.toLowerCase();
    if (el.id) text += "#" + el.id;
    if (el.classList.length) text += "." + Array.from(el.classList).join(".");
    const section = el.closest("section[id], article, main > *");
    if (section && section !== el) text = (section.id ? "#" + section.id : section.tagName.toLowerCase()) + " " + text;
    return text;
  };
  const skipped = (el) => el.closest(".visually-hidden, details:not([open]), script, style, template") !== null;
  const tableBox = (el) =>
    el.tagName === "TABLE" || (el.children.length === 1 && el.firstElementChild.tagName === "TABLE");
  const insideScrollBox = (el) => {
    for (let node = el.parentElement; node && node !== document.body; node = node.parentElement) {
      const overflow = getComputedStyle(node).overflowX;
      if (overflow === "auto" || overflow === "scroll") return true;
    }
    return false;
  };
  if (document.documentElement.scrollWidth > viewport + 1) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth}px wide in ${viewport}px`);
  }
  for (const el of document.querySelectorAll("body *")) {
    if (skipped(el) || ["INPUT", "TEXTAREA", "SELECT", "OPTION", "PROGRESS"].includes(el.tagName)) continue;
    const style = getComputedStyle(el);
    if (style.display === "none" || style.display === "contents") continue;
    const overflow = style.overflowX;
    const hidden = el.scrollWidth - el.clientWidth;
    if (overflow !== "visible" && hidden > 1) {
      if (wide) {
        problems.push(`${describe(el)} hides ${hidden}px of its content (${overflow})`);
      } else if (!tableBox(el) || overflow === "hidden" || overflow === "clip") {
        problems.push(`${describe(el)} hides ${hidden}px and is not a table's own scroll box`);
      }
    }
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > viewport + 1 && !insideScrollBox(el)) {
      problems.push(`${describe(el)} reaches ${Math.round(box.right)}px, past the ${viewport}px window`);
    }
  }
  if (wide) {
    for (const button of document.querySelectorAll("button, input[type=submit]")) {
      if (skipped(button) || button.offsetParent === null) continue;
      const lines = new Set();
      const walker = document.createTreeWalker(button, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.parentElement.closest(".visually-hidden") || !node.textContent.trim()) continue;
        const range = document.createRange();
        range.selectNodeContents(node);
        for (const rect of range.getClientRects()) if (rect.width > 0) lines.add(Math.round(rect.top));
      }
      if (lines.size > 1) {
        problems.push(`${describe(button)} "${button.innerText.trim()}" wraps onto ${lines.size} lines`);
      }
    }
  }
  return Array.from(new Set(problems));
}"""


def _stretching_data(site: Site) -> None:
    contoso = site.contoso
    long_named = contoso.upload(success_package("1.0.0.0", unique_name=LONG_NAME))
    assert contoso.promote(long_named, "test").status == "succeeded"
    assert contoso.run(contoso.approve(site.waiting)).status == "succeeded"  # production, for the metrics


@pytest.mark.parametrize("device", sorted(WIDTHS))
def test_every_page_fits_the_window(new_page: Any, live_server: Any, site: Site, device: str) -> None:
    _stretching_data(site)
    width, height = WIDTHS[device]
    problems: list[str] = []
    measured = 0
    for persona in ("maker", "approver", "admin"):
        page = sign_in_with_password(new_page(), live_server, site.people[persona].username)
        page.set_viewport_size({"width": width, "height": height})
        for name, path in site.urls:
            if open_page(page, live_server.url + path) is None:
                continue
            measured += 1
            problems += [f"{path} ({name}, {persona}): {problem}" for problem in page.evaluate(MEASURE, width > 600)]
    assert measured > 60
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("device", sorted(WIDTHS))
def test_the_release_matrix_keeps_every_column_on_screen(
    new_page: Any, live_server: Any, site: Site, device: str
) -> None:
    _stretching_data(site)
    width, height = WIDTHS[device]
    page = sign_in_with_password(new_page(), live_server, site.people["maker"].username)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(live_server.url + "/")
    headers = page.locator("#matrices table.matrix thead th")
    assert headers.count() == 1 + len(site.contoso.stages)
    for index in range(headers.count()):
        box = headers.nth(index).bounding_box()
        assert box is not None and box["width"] > 20 and box["x"] >= 0 and box["x"] + box["width"] <= width, (
            headers.nth(index).inner_text(),
            box,
        )
    cells = page.locator(f"#matrices tbody tr:has-text('{LONG_NAME[:10]}') td[data-status]")
    assert cells.count() == len(site.contoso.stages)
