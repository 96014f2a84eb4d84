"""The HTML report: escaped, every figure inline SVG, NaN-safe, torch-free, renders in Chromium."""

import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest

from gdscope import api
from gdscope.report import render_report, write_report
from gdscope.store import Store

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<script>alert(1)</script>"
# fast at smoke scale, and between them: sharpness vs 2/η, rate vs κ (a fit), NTK λ_min vs width
REAL_STUDIES = ("edge-of-stability", "nag-acceleration-network", "width-controls-structure")
NAN = math.nan
SVG = "{http://www.w3.org/2000/svg}"


class _Trace:
    """Just what Store.record_trial reads from a finished trial's trace."""

    status, reason, steps, wall_time_s = "completed", "ran 3 steps", 3, 0.01

    def __init__(self, width: int):
        self._loss = [1.0, 0.5 / width, 0.1 / width]

    def rows(self):
        return [(step, "loss", value) for step, value in enumerate(self._loss)]


def _record_hostile_study(results: Path) -> None:
    """A study whose every string is markup, with a failed trial and NaN verdicts."""
    store = Store(results)
    spec = {
        "name": XSS,
        "title": "<b>bold</b> & <i>title</i>",
        "reference": '<img src=x onerror="alert(2)">',
        "provenance": "designed",
        "description": "</p><script>alert(3)</script>",
        "claims": [
            {
                "id": "<i>fit</i>",
                "kind": "power_law",
                "x": {"reduce": "config", "key": "model.width"},
                "y": {"reduce": "final", "metric": "loss"},
                "band": [-1.1, -0.9],
                "description": "<u>loss</u> ∝ width⁻¹",
            },
            {
                "id": "nan-claim",
                "kind": "within",
                "y": {"reduce": "final", "metric": "loss"},
                "band": [0, 1],
            },
        ],
    }
    store.record_study(XSS, "smoke", spec)
    for width in (4, 8, 16):
        config = {"model": {"width": width, "name": "<svg onload=alert(4)>"}, "seed": 0}
        store.record_trial(XSS, "smoke", config, f"h{width:03d}", _Trace(width))
    store.record_trial(
        XSS,
        "smoke",
        {"model": {"width": 32}, "seed": 0},
        "hfail",
        "RuntimeError: <script>alert(5)</script>",
    )
    fit = SimpleNamespace(
        claim_id="<i>fit</i>",
        status="PASS",
        statistic=-1.0,
        ci=(-1.05, -0.95),
        band=(-1.1, -0.9),
        n_points=3,
        reason="<b>exponent</b> inside band",
        evidence=[{"seed": 0, "x": w, "y": 0.1 / w, "trial": f"<em>{w}</em>"} for w in (4, 8, 16)],
        reference="<script>alert(6)</script>",
    )
    undecided = SimpleNamespace(
        claim_id="nan-claim",
        status="INCONCLUSIVE",
        statistic=NAN,
        ci=(NAN, NAN),
        band=(0.0, 1.0),
        n_points=0,
        reason="model.width=32: trial failed <script>alert(7)</script>",
        evidence=[],
        reference=None,
    )
    store.record_verdicts(XSS, "smoke", [fit, undecided])


def _record_passing_study(results: Path) -> None:
    """A study whose one paper claim passes: its section starts folded."""
    store = Store(results)
    claim = {"id": "small-loss", "kind": "within", "y": {"reduce": "final", "metric": "loss"}}
    store.record_study(
        "passing", "smoke", {"name": "passing", "claims": [{**claim, "band": [0, 1]}]}
    )
    for width in (4, 8):
        store.record_trial(
            "passing", "smoke", {"model": {"width": width}, "seed": 0}, f"p{width}", _Trace(width)
        )
    verdict = SimpleNamespace(
        claim_id="small-loss",
        status="PASS",
        statistic=0.025,
        ci=(NAN, NAN),
        band=(0.0, 1.0),
        n_points=2,
        reason="final(loss) in [0, 1] in both trials",
        reference=None,
        evidence=[{"trial": f"width={w}", "y": 0.1 / w, "ok": True} for w in (4, 8)],
    )
    store.record_verdicts("passing", "smoke", [verdict])


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Three real catalogue studies at smoke scale, the hostile and a passing study, one store."""
    directory = tmp_path_factory.mktemp("results")
    for name in REAL_STUDIES:
        api.run_study(name, scale="smoke", results=directory)
    _record_hostile_study(directory)
    _record_passing_study(directory)
    return directory


@pytest.fixture(scope="module")
def report(results: Path) -> Path:
    return write_report(results, results / "out" / "report.html")


@pytest.fixture(scope="module")
def page(report: Path) -> str:
    return report.read_text(encoding="utf-8")


def _articles(page: str) -> list[str]:
    return re.findall(r'<article class="claim.*?</article>', page, flags=re.S)


def test_every_stored_string_is_escaped(page):
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()  # the page has no script at all
    for raw in ("<img src=x", "<svg onload", "<b>bold", "<i>fit", "<em>", "<u>loss"):
        assert raw not in page, raw
    # the only <svg> elements are the figures matplotlib drew (stored strings inside are text)
    assert page.count("<svg") == page.count('<svg xmlns:xlink="http://www.w3.org/1999/xlink"')
    assert "&lt;i&gt;fit&lt;/i&gt;" in page


def test_every_figure_is_inline_svg_with_searchable_text(page, results):
    figures = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert figures
    for figure in figures:
        root = ElementTree.fromstring(figure)  # well-formed XML
        assert root.find(f"{SVG}title") is not None
        texts = [t.text for t in root.iter(f"{SVG}text") if t.text]
        assert "step" in texts or texts, "tick and axis labels are text, not glyph paths"
    ids = re.findall(r' id="([^"]*)"', "".join(figures))
    assert len(ids) == len(set(ids))  # no two figures of the page share an id
    for reference in set(re.findall(r'(?:url\(#|href="#)([^)"]+)', "".join(figures))):
        assert reference in ids, reference
    articles = _articles(page)
    assert len(articles) == len(Store(results).verdicts())
    assert all("<svg " in a for a in articles)  # every claim has its figure
    assert "figure not drawn" not in page
    for title in ("Sharpness against 2/η", "NTK spectrum against width", "Training curves"):
        assert title in page
    assert "log–log of the exponent" in page
    assert "1 − rate of residual against initial κ for groups A and B" in page  # rate against κ


@pytest.mark.slow  # ~20-40 s; the default run stays under 10 minutes
def test_figures_are_written_as_svg_and_pdf_files(results, tmp_path):
    out = tmp_path / "figures"
    done = subprocess.run(
        [sys.executable, "-m", "gdscope", "report", str(results), "-o", str(tmp_path / "r.html"),
         "--figures", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = sorted(out.iterdir())
    svgs = [f for f in files if f.suffix == ".svg"]
    pdfs = [f for f in files if f.suffix == ".pdf"]
    assert svgs and [f.stem for f in svgs] == [f.stem for f in pdfs]
    assert len(files) == len(svgs) + len(pdfs)  # no temporary file left behind
    assert all(f.read_bytes().startswith(b"%PDF-") for f in pdfs)
    for f in svgs:
        ElementTree.parse(f)
        assert re.fullmatch(r"\d\d-[A-Za-z0-9._-]+-\d\d-[A-Za-z0-9._-]+", f.stem), f.name
    # the hostile study's name (markup) became a safe file name inside the folder
    assert any("script" in f.name for f in svgs)
    again = subprocess.run(
        [sys.executable, "-m", "gdscope", "report", str(results), "-o", str(tmp_path / "r.html"),
         "--figures", str(out)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in sorted(out.iterdir())]


def test_nan_statistics_and_failed_trials_render(page):
    row = next(r for r in re.findall(r'<tr class="verdict">.*?</tr>', page) if "nan-claim" in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[3] == "–"  # statistic [CI]: a NaN statistic and CI are a dash, not "nan"
    assert "nan" not in row.lower().replace("nan-claim", "")
    assert "1 failed trial(s)" in page
    assert "RuntimeError: &lt;script&gt;alert(5)&lt;/script&gt;" in page


def test_environment_comes_last_with_versions_device_and_date(page):
    env = page[page.index('<section id="environment">') :]
    assert page.rindex("<section") == page.index('<section id="environment">')
    for what in ("python", "torch", "numpy", "gdscope", "device", "report written"):
        assert f"<th>{what}</th>" in env


def test_report_module_imports_no_torch(results):
    code = (
        "import sys\n"
        "import gdscope.report\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        f"gdscope.report.render_report({str(results)!r})\n"
        "assert 'torch' not in sys.modules, 'render'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_report_renders_in_headless_chromium(report, results):
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: run the test set-up (`make test` installs Debian's chromium)"
        )
    from playwright.sync_api import sync_playwright

    problems, dialogs = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.resolve().as_uri(), wait_until="load")
            rows = page.locator("table.verdicts tbody tr")
            assert rows.count() == len(Store(results).verdicts())
            assert rows.filter(has_text=XSS).count() == 2  # the hostile study's two claims
            sizes = page.evaluate(
                "Array.from(document.querySelectorAll('figure svg'))"
                ".map(s => s.getBoundingClientRect().width)"
            )
            assert sizes and all(width > 100 for width in sizes), sizes
            heading = page.get_by_role("heading", name=XSS)
            assert heading.is_visible() and XSS in heading.inner_text()
            assert page.locator("script").count() == 0
            _a_link_opens_a_folded_section(page)
        finally:
            browser.close()
    assert problems == []
    assert dialogs == []


def test_no_figure_fails_to_draw(page):
    assert "figure not drawn" not in page


def test_dollar_signs_in_stored_strings_are_text_not_mathtext(tmp_path):
    store = Store(tmp_path)
    store.record_study("s", "smoke", {"name": "s", "claims": []})
    for i, path in enumerate(["a$\\frac$b", "plain"]):  # unparsable as TeX
        store.record_trial("s", "smoke", {"data": {"path": path}, "seed": 0}, f"h{i}", _Trace(4))
    page = render_report(tmp_path)
    assert "figure not drawn" not in page and "<svg " in page


def test_the_page_opens_with_each_paper_claim_at_a_glance_then_contents(page, results):
    head = page[: page.index('<details class="study"')]
    assert head.index('id="summary"') < head.index('id="contents"') < head.index('id="verdicts"')
    glance = re.search(r'<section id="summary">.*?</section>', page, flags=re.S).group(0)
    table = re.search(r'<section id="verdicts">.*?</section>', page, flags=re.S).group(0)
    paper_claims = re.findall(r'<tr class="verdict"><td><a href="#(s\d+-c\d+)">', table)
    links = re.findall(r'<td><a href="#(s\d+-c\d+)">', glance)
    assert len(links) == len(set(links)) and sorted(links) == sorted(paper_claims)
    assert all(f'id="{anchor}"' in page for anchor in links)  # linked to its section
    for seed in ("000", "002"):  # seed papers with paper claims among REAL_STUDIES
        assert f"Seed paper {seed}" in glance
    assert "Studies without a seed paper" in glance  # the hostile study names none
    contents = re.search(r'<nav id="contents">.*?</nav>', page, flags=re.S).group(0)
    studies = re.findall(r'<details class="study" id="(s\d+)"', page)
    assert studies and all(f'href="#{s}"' in contents for s in studies)
    assert "<th>Reason</th>" in table and "<th>Reference</th>" not in table


def _studies(page: str) -> list[str]:
    """The page's study sections, each from its ``<details>`` tag to its end."""
    parts = page.split('<details class="study"')[1:]
    return ['<details class="study"' + p.split("\n</details>\n")[0] for p in parts]


def _find(pattern: str, text: str) -> str:
    """The first group of ``pattern``'s first match in ``text`` (which must match)."""
    found = re.search(pattern, text, flags=re.S)
    assert found is not None, pattern
    return found.group(1)


def test_each_study_is_a_details_section_open_when_a_paper_claim_fails_or_is_inconclusive(page):
    studies = _studies(page)
    contents = _find(r'<nav id="contents">(.*?)</nav>', page)
    assert len(studies) == len(re.findall(r'<a href="#s\d+">', contents)) > 1
    opened = 0
    for section in studies:
        tag = section[: section.index(">") + 1]
        summary = _find(r"<summary>(.*?)</summary>", section)
        assert re.search(r"<h2>.+ <span", summary)  # the name stays visible when folded
        claims = [
            (m.group(1), "instrument check" in m.group(0))
            for m in re.finditer(r'<article class="claim claim-([A-Z-]+)".*?</h3>', section, re.S)
        ]
        paper = [status for status, check in claims if not check]
        for status in set(paper):  # the summary counts the paper claims: "3 PASS · 1 FAIL"
            assert f"{paper.count(status)} {status.replace('-', ' ')}</span>" in summary
        flagged = any(s in ("FAIL", "INCONCLUSIVE") for s in paper) or ("FAIL", True) in claims
        assert (" open>" in tag) == flagged, (tag, claims)
        opened += flagged
    assert 0 < opened < len(studies)  # the hostile study (INCONCLUSIVE) opens, a passing one not
    assert f"{opened} of {len(studies)} open" in page


def test_every_link_of_the_page_has_its_target(page):
    ids = set(re.findall(r' id="([^"]+)"', page))
    links = set(re.findall(r'<a href="#([^"]+)"', page))
    assert links and links <= ids, links - ids
    studies = re.findall(r'<a href="#(s\d+)"', page)
    assert studies and all(f'<details class="study" id="{s}"' in page for s in studies)
    for section in _studies(page):  # claims are inside their study's <details>
        index = _find(r'<details class="study" id="(s\d+)"', section)
        assert all(
            c.startswith(index + "-c") for c in re.findall(r'<article [^>]*id="([^"]+)"', section)
        )


def test_one_study_alone_starts_open(tmp_path):
    store = Store(tmp_path)
    store.record_study("s", "smoke", {"name": "s", "claims": []})
    store.record_trial("s", "smoke", {"seed": 0}, "h0", _Trace(4))
    assert '<details class="study" id="s0" open>' in render_report(tmp_path)


def _a_link_opens_a_folded_section(page) -> None:
    """Follow a link of the summary table to a claim in a folded section: the section opens."""
    target = page.evaluate(
        """() => Array.from(document.querySelectorAll('#summary a[href^="#s"]'))
             .map((a) => a.getAttribute('href').slice(1))
             .find((id) => { const d = document.getElementById(id).closest('details.study');
                             return id.includes('-c') && d && !d.open; })"""
    )
    assert target, "no claim of a folded section is linked from the summary"
    claim = page.locator(f"[id='{target}']")
    assert not claim.is_visible()
    page.locator(f"#summary a[href='#{target}']").click()
    claim.wait_for(state="visible", timeout=5000)
    box = claim.bounding_box()
    assert box is not None and 0 <= box["y"] < page.viewport_size["height"]
    study = target.split("-")[0]
    assert page.evaluate(f"document.getElementById('{study}').open")
    page.locator(f"[id='{study}'] > summary").click()  # a click on its line folds it again
    assert not page.evaluate(f"document.getElementById('{study}').open")
