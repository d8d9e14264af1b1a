"""Reports of a run: the HTML page (--report, `curate report`), the Markdown summary
(--summary-md, GITHUB_STEP_SUMMARY), `curate diff`, the sampled documents and the documented
stats schema. Runs are on the committed golden corpus, in this process."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.checks import FAILED_CHECK_EXIT
from curate.reporting.diff import diff, flatten
from curate.samples import PER_RUN, merge
from curate.stats import markdown, undocumented
from tests.cli import run_main as curate

GOLDEN = Path(__file__).resolve().parent / "golden" / "corpus"
POOL, TARGET = str(GOLDEN / "pool"), str(GOLDEN / "target.parquet")
ROOT = Path(__file__).resolve().parent.parent


class Page(HTMLParser):
    """The parts of a page the tests look at; `errors` collects tags closed out of order."""

    VOID = frozenset({"meta", "br", "rect", "line", "polygon", "polyline", "path", "img", "hr"})

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.pre: list[str] = []
        self._in_pre = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        if tag == "pre":
            self._in_pre = True
            self.pre.append("")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.pre[-1] += data


def parsed(path: Path) -> Page:
    page = Page(path.read_text())
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert "script" not in page.tags and "http://" not in path.read_text().replace(
        "http://www.w3.org/2000/svg", ""
    )
    return page


KINDS = {
    "select": [
        "select",
        POOL,
        "{out}",
        "--target",
        TARGET,
        "--budget",
        "20K",
        "--group-by",
        "domain",
        "--top-k",
    ],
    "select-diversity": [
        "select",
        POOL,
        "{out}",
        "--target",
        TARGET,
        "--budget",
        "docs:30",
        "--diversity",
        "4",
    ],
    "dedup-exact": ["dedup", "exact", POOL, "{out}"],
    "dedup-minhash": ["dedup", "minhash", POOL, "{out}"],
    "filter-gopher": ["filter", "gopher", POOL, "{out}"],
    "filter-threshold": ["filter", "threshold", POOL, "{out}", "--column", "label", "--min", "1"],
    "resample": ["resample", POOL, "{out}", "--by", "label", "--budget", "docs:9"],
    "diversify": ["diversify", "{clustered}", "{out}", "--budget", "docs:20", "--group-by", "domain"],
}
PLOTS = {
    "select": ("pool vs selection", "cumulative budget", "share by domain", "KL(target"),
    "select-diversity": ("clusters by size", "budget per cluster"),
    "dedup-exact": ("rows dropped per rule",),
    "dedup-minhash": ("rows dropped per rule",),
    "filter-gopher": ("rows dropped per rule",),
    "filter-threshold": ("label: pool vs selection", "keep from", "rows dropped per rule"),
    "resample": ("label: pool vs selection", "cumulative budget"),
    "diversify": ("clusters by size", "budget per cluster", "share by domain"),
}


def clustered_pool(folder: Path) -> Path:
    """The golden pool with a `kmeans_cluster` column (what `curate cluster` adds), for diversify."""
    folder.mkdir()
    for shard in sorted((GOLDEN / "pool").glob("*.parquet")):
        t = pq.read_table(shard)
        t = t.append_column("kmeans_cluster", pa.array([i % 5 for i in range(t.num_rows)], pa.int32()))
        pq.write_table(t, folder / shard.name)
    return folder


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_report_parses_and_holds_each_section(tmp_path: Path, kind: str) -> None:
    out, html = tmp_path / "out", tmp_path / "report.html"
    clustered = clustered_pool(tmp_path / "clustered") if kind == "diversify" else None
    argv = [a.format(out=out, clustered=clustered) for a in KINDS[kind]]
    code = curate(*argv, "--workers", "1", "--no-progress", "--report", str(html), "--check", "workers >= 1")
    assert code == 0
    page = parsed(html)
    assert {"summary", "checks", "plots", "samples", "run"} <= set(page.sections)
    text = html.read_text()
    for title in PLOTS[kind]:
        assert title in text, title
    assert "dropped: " in text  # every one of these runs drops documents, and samples them
    # `curate report` rebuilds the same page from the finished run's manifest.
    again = tmp_path / "again.html"
    assert curate("report", str(out), "-o", str(again)) == 0
    assert again.read_bytes() == html.read_bytes()


def test_a_document_with_markup_stays_text(tmp_path: Path) -> None:
    hostile = "<script>alert('x')</script></textarea></pre><img src=x onerror=alert(1)> " + "word " * 60
    texts = [hostile, "a short one", *(f"ordinary document number {i} " + "text " * 80 for i in range(6))]
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), pool)
    html = tmp_path / "r.html"
    assert (
        curate("filter", "gopher", str(pool), str(tmp_path / "out"), "--no-progress", "--report", str(html))
        == 0
    )
    page = parsed(html)
    assert "script" not in page.tags and "img" not in page.tags and "textarea" not in page.tags
    assert any(hostile[:40] in p for p in page.pre)  # shown, as text
    assert "&lt;script&gt;" in html.read_text()


def test_a_failed_check_is_marked_and_the_summary_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gh = tmp_path / "gh.md"
    gh.write_text("# before\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(gh))
    html, md = tmp_path / "r.html", tmp_path / "s.md"
    code = curate(
        "dedup", "exact", POOL, str(tmp_path / "out"), "--no-progress", "--report", str(html),
        "--summary-md", str(md), "--check", "duplicates_dropped > 1000000", "--check", "rows_out >= 1",
    )  # fmt: skip
    assert code == FAILED_CHECK_EXIT
    assert "1 of 2 checks FAILED" in html.read_text()
    summary = md.read_text()
    assert "**FAIL**" in summary and "`duplicates_dropped > 1000000`" in summary and str(html) in summary
    assert gh.read_text() == "# before\n" + summary
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert [c["passed"] for c in manifest["checks"]] == [False, True]
    rows_out = manifest["summary"]["rows_out"]
    assert f"| rows kept | {rows_out:,} |" in summary


def test_a_recipe_step_judges_its_checks_in_its_report(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[[step]]\nrun = "dedup exact"\ninput = "{POOL}"\noutput = "out"\nreport = "out.html"\n'
        'checks = ["rows_out > rows_in"]\n'
    )
    assert curate("run", str(recipe), "--no-progress") == FAILED_CHECK_EXIT
    text = (tmp_path / "out.html").read_text()
    assert "FAILED" in text and "curate dedup exact" in text


def test_report_refuses_what_is_not_a_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert curate("report", str(tmp_path)) == 1
    assert "_manifest.json" in capsys.readouterr().err


def test_diff_prints_what_moved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, budget in (("a", "10K"), ("b", "20K")):
        argv = ["select", POOL, str(tmp_path / name), "--target", TARGET, "--budget", budget, "--no-progress"]
        assert curate(*argv, "--stats-json", str(tmp_path / f"{name}.json")) == 0
    capsys.readouterr()
    assert curate("diff", str(tmp_path / "a.json"), str(tmp_path / "b")) == 0
    out = capsys.readouterr().out
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    line = next(x for x in out.splitlines() if x.startswith("selected_docs "))
    assert f"{b['selected_docs'] - a['selected_docs']:+d}" in line
    assert "timings" not in out and "field(s) differ" in out
    assert curate("diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")) == 0
    assert capsys.readouterr().out == "no differences\n"


def test_diff_matches_records_by_name_not_position() -> None:
    a = {"groups": [{"group": "x", "share": 0.1}, {"group": "y", "share": 0.9}], "timings": {"s": 1}}
    b = {"groups": [{"group": "y", "share": 0.9}, {"group": "x", "share": 0.2}], "timings": {"s": 2}}
    changes = diff(a, b)
    assert [(c.path, c.before, c.after) for c in changes] == [("groups[x].share", 0.1, 0.2)]
    assert [c.path for c in diff(a, b, everything=True)] == ["groups[x].share", "timings.s"]
    assert diff(a, b, tolerance=2.0) == []


leaf = st.one_of(st.integers(-5, 5), st.floats(-1, 1, allow_nan=False), st.text(max_size=3), st.none())
tree = st.recursive(
    leaf, lambda c: st.dictionaries(st.text("abc", min_size=1, max_size=2), c, max_size=3), max_leaves=12
)


@given(st.dictionaries(st.text("xyz", min_size=1, max_size=2), tree, max_size=4))
def test_diff_of_a_tree_with_itself_is_empty_and_flatten_keeps_every_leaf(stats: dict) -> None:  # type: ignore[type-arg]
    assert diff(stats, json.loads(json.dumps(stats))) == []
    added = diff({}, stats)
    assert all(c.kind == "added" for c in added) and {c.path for c in added} == set(flatten(stats))


@given(st.lists(st.lists(st.integers(0, 99), max_size=5), max_size=6))
def test_samples_keep_the_first_of_each_kind_in_shard_order(shards: list[list[int]]) -> None:
    parts = [
        {"kept": [{"id": str(i)} for i in s], "dropped": {"r": [{"id": str(-i)} for i in s]}} for s in shards
    ]
    got = merge(parts)
    every = [str(i) for s in shards for i in s]
    assert [d["id"] for d in got["kept"]] == every[:PER_RUN]
    assert len(got["dropped"].get("r", [])) == min(len(every), PER_RUN)


def test_docs_stats_md_is_current() -> None:
    assert (ROOT / "docs" / "stats.md").read_text() == markdown(), "docs/stats.md is stale: run `make docs`"


def test_an_undocumented_field_is_named() -> None:
    assert undocumented({"kind": "select", "schema": "curate.stats/1", "kl_reduction": 0.1}) == []
    assert undocumented({"kind": "select", "surprise": 1}) == ["select: surprise"]
    assert undocumented({"kind": "nothing"}) == ["kind 'nothing'"]


def test_every_golden_stats_field_is_documented(tmp_path: Path) -> None:
    # The golden runs check every command; this checks one quickly in the unit suite too.
    stats = tmp_path / "s.json"
    assert (
        curate("filter", "gopher", POOL, str(tmp_path / "o"), "--no-progress", "--stats-json", str(stats))
        == 0
    )
    assert undocumented(json.loads(stats.read_text())) == []
    shutil.rmtree(tmp_path / "o")
