"""The export checks run in bounded memory, whatever the size or shape of the file.

Rules checked: "Security" (a site's checks run in a container beside researchers'
servers, under a memory limit) and "No disclosure" (what a check cannot read within
its bound fails it, and says what was not checked; nothing unread passes): freezing a
table of hundreds of MB takes the memory a small one does; a row too long, a cell csv
cannot read, a JSON document too large to parse and a table of too many strata fail
their check with the reason instead of holding the file or stopping the freeze.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from extensions.contracts.export import ExportRules, Manifest
from extensions.guard.export import bounded, disclosure, tables
from extensions.guard.export.checks import FileChecks
from extensions.guard.recognise import Cohort, Recogniser
from tests.unit.extensions.guard.test_recognise import IDS, VOCABULARY, write_dataset

REPO = Path(__file__).resolve().parents[4]
MB = 1024 * 1024
#: the peak resident memory of the site's module freezing one table of any size
PEAK_MB = 200

# the site's module as the export service runs it, reporting its own peak memory: VmHWM,
# not getrusage's ru_maxrss, which a child inherits from the process that forked it
CHILD = """
import re, sys
from extensions.guard.export.__main__ import main
code = main(sys.argv[1:])
with open("/proc/self/status") as f:
    print("peak-kib", re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def checks() -> FileChecks:
    return FileChecks(ExportRules(), Recogniser(Cohort.from_ids(IDS, VOCABULARY)))


def wide_results(path: Path, size: int) -> None:
    """A results table of about `size` bytes: 96 columns of effects and a count column
    (every count 20 or more), rows of about 700 bytes, written a block at a time."""
    stats = [f"{s}_{k}" for k in range(32) for s in ("beta", "se", "p")]
    block = []
    for i in range(1000):
        cells = [f"{((i * 7919 + k * 31) % 2001 - 1000) / 10000:.5f}" for k in range(96)]
        block.append(f"chr{i % 22 + 1},{1000 + i * 37},rs{100000 + i},{20 + i % 50},")
        block[-1] += ",".join(cells) + "\n"
    text = "".join(block)
    with open(path, "w") as f:
        f.write("chrom,pos,rsid,n," + ",".join(stats) + "\n")
        written = 0
        while written < size:
            f.write(text)
            written += len(text)


def freeze_in_child(tmp_path: Path, name: str, size: int) -> tuple[Manifest, float]:
    """Freeze a generated table of `size` bytes through the site's command line in a child
    process: its manifest and the child's peak resident memory in MB."""
    home, export, data = tmp_path / "home", tmp_path / "export", tmp_path / "data"
    for d in (home, export):
        d.mkdir(exist_ok=True)
    if not data.exists():
        write_dataset(data / "ds-nig", IDS[:50])
    wide_results(home / name, size)
    rules = ExportRules(max_file_bytes=1024 * MB, max_request_bytes=1024 * MB)
    argv = ["freeze", "--home", str(home), "--export-dir", str(export), "--data", str(data)]
    argv += ["--request", name.replace(".", "-"), "--rules", rules.to_json(), "--", name]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (home / name).unlink()
    peak = [ln.split()[1] for ln in done.stderr.splitlines() if ln.startswith("peak-kib ")]
    return Manifest.from_json(done.stdout.strip().splitlines()[-1]), int(peak[-1]) / 1024


def test_freezing_a_large_table_takes_the_memory_a_small_one_does(tmp_path):
    """A 200 MB table of 100 columns (250,000 rows, every one checked) held 1.4 GB when
    its rows were held; read a row at a time, the module's peak stays under PEAK_MB and
    within 32 MB of a 20 MB table's."""
    small, small_peak = freeze_in_child(tmp_path, "small.csv", 20 * MB)
    large, large_peak = freeze_in_child(tmp_path, "large.csv", 200 * MB)
    (s,), (big,) = small.files, large.files
    assert big.bytes > 200 * MB and big.sha256
    assert [c.ok for c in s.checks] == [True, True, True, True], s.checks
    assert s.checks[3].detail.startswith("1 table, ") and "within the rules" in s.checks[3].detail
    assert [c.ok for c in big.checks] == [True, True, True, True], big.checks
    assert big.checks[3].detail == "1 table, 250000 rows: within the rules"
    assert large_peak < PEAK_MB, (small_peak, large_peak)
    assert large_peak < small_peak + 32, (small_peak, large_peak)


# -- delimited rows ----------------------------------------------------------------------


def test_a_file_of_one_endless_line_fails_without_being_held(checks, tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("group,n\n" + "x" * (8 * bounded.MAX_ROW_CHARS))
    tracemalloc.start()
    result = checks.disclosure(path, "one.csv")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not result.ok
    assert result.detail == (
        "row 1 could not be read (a row longer than 1,048,576 characters), "
        "the rest not checked: one.csv"
    )
    assert peak < 4 * bounded.MAX_ROW_CHARS * 4, peak  # a row's characters, not the file


def test_a_quoted_row_over_many_lines_counts_as_one_row(tmp_path, monkeypatch, checks):
    monkeypatch.setattr(bounded, "MAX_ROW_CHARS", 1000)
    path = tmp_path / "notes.csv"
    quoted = '"' + "line\n" * 100 + '"'  # 500 characters over 100 lines: one row
    path.write_text("note,n\n" + f"{quoted},50\n" * 3)
    assert checks.disclosure(path, "notes.csv").detail == "1 table, 3 rows: within the rules"
    path.write_text("note,n\n" + '"' + "line\n" * 300 + '",50\n')
    d = checks.disclosure(path, "notes.csv")
    assert not d.ok and "a row longer than 1,000 characters" in d.detail


def test_a_cell_csv_cannot_read_fails_the_check_instead_of_stopping_the_freeze(checks, tmp_path):
    path = tmp_path / "big_cell.csv"
    path.write_text("note,n\n" + '"' + "x" * 200_000 + '",50\n')
    d = checks.disclosure(path, "big_cell.csv")
    assert not d.ok
    assert d.detail.startswith("row 1 could not be read (field larger than field limit")
    assert d.detail.endswith("the rest not checked: big_cell.csv")
    path.write_text('"' + "x" * 200_000 + '",n\n')
    d = checks.disclosure(path, "big_cell.csv")
    assert not d.ok and d.detail.startswith("the table could not be read: the header could not")


# -- what the rules keep -----------------------------------------------------------------


def test_many_failures_keep_their_count_and_the_first_three(checks, tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("g,n,ac\n" + "".join(f"g{i},{i % 4 + 1},2\n" for i in range(100_000)))
    tracemalloc.start()
    d = checks.disclosure(path, "small.csv")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert d.detail.startswith(
        "200000 cell(s) break the disclosure rules: row 1, column n: 1, a count under 5; "
        "row 2, column n: 2"
    )
    assert d.detail.endswith("and 199997 more")
    assert peak < 8 * MB, peak  # neither the rows nor 200,000 findings held


def test_a_table_of_more_strata_than_the_check_holds_fails_and_says_so(
    checks, tmp_path, monkeypatch
):
    path = tmp_path / "by_site.csv"
    rows = "".join(
        f"1:{i}:A:G,{('nig', 'ncc', 'tommo')[i % 3]},{50 + i % 7}\n" for i in range(3000)
    )
    path.write_text("variant,site,n\n" + rows)
    d = checks.disclosure(path, "by_site.csv")  # one site a variant: each one dominated
    assert d.detail.startswith("3000 cell(s) break the disclosure rules: row 1, column n: site")
    monkeypatch.setattr(disclosure, "MAX_STRATA_BYTES", 100_000)
    d = checks.disclosure(path, "by_site.csv")
    assert not d.ok
    assert d.detail.startswith("more strata than the check adds up in 0 MB by row ")
    assert "the rest not checked: by_site.csv; " in d.detail


def test_the_first_rows_decide_which_columns_make_a_stratum(checks, tmp_path):
    """A numeric column (a year) is no part of a stratum: its rows add up to one total."""
    path = tmp_path / "by_year.csv"
    path.write_text("disease,year,site,n\nE11,2020,nig,950\nE11,2021,ncc,30\nE11,2022,tommo,20\n")
    d = checks.disclosure(path, "by_year.csv")
    assert d.detail == (
        "1 cell(s) break the disclosure rules: row 1, column n: site nig holds 950 of the "
        "total 1000 for (E11) (95%), over the dominance share of 90%"
    )


def test_an_html_table_longer_than_read_fails_and_says_so(checks, tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "MAX_ROWS", 3)
    rows = "".join(f"<tr><td>g{i}</td><td>50</td></tr>" for i in range(4))
    html = f"<table><thead><tr><th>g</th><th>n</th></tr></thead><tbody>{rows}</tbody></table>"
    nb = {"cells": [{"cell_type": "code", "source": "t", "metadata": {}, "outputs": [
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": html}}]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(nb))
    d = checks.disclosure(path, "a.ipynb")
    assert d.detail == "over 3 rows, the rest not checked: cell 1, output 1, table 1"


# -- JSON ----------------------------------------------------------------------------------


def test_a_json_document_too_large_to_parse_fails_kind_and_disclosure(
    checks, tmp_path, monkeypatch
):
    path = tmp_path / "counts.json"
    path.write_text(json.dumps([{"sex": "female", "n": 120}] * 5000))
    assert checks.kind(path, "counts.json").ok and checks.disclosure(path, "counts.json").ok
    cost = bounded.file_json_cost(path)
    assert cost > 64 * 3 * 5000  # an object a structural character, or more
    monkeypatch.setattr(bounded, "JSON_BUDGET", cost - 1)
    k, d = checks.kind(path, "counts.json"), checks.disclosure(path, "counts.json")
    assert not k.ok and k.detail.startswith(".json file not checked: a JSON document that")
    assert k.detail.endswith(" MB a check may hold")
    assert not d.ok and d.detail.startswith("not checked: a JSON document that would take")
    assert checks.media_type(path, "counts.json") == "text/plain"


def test_a_file_is_sniffed_once_for_its_media_type_and_its_kind(tmp_path, monkeypatch):
    """The freeze asks for a frozen file's media type, then its checks: a JSON file is
    parsed once for both, and again only when the file changes."""
    from extensions.guard.export import kinds

    calls = []
    sniff = kinds.sniff
    monkeypatch.setattr(kinds, "sniff", lambda p, n: calls.append(n) or sniff(p, n))
    checks = FileChecks(ExportRules(), Recogniser(Cohort.from_ids(IDS, VOCABULARY)))
    path = tmp_path / "counts.json"
    path.write_text(json.dumps([{"sex": "female", "n": 120}] * 50))
    assert checks.media_type(path, "counts.json") == "application/json"
    assert checks.kind(path, "counts.json").ok
    assert calls == ["counts.json"]
    path.write_text("not JSON at all")
    assert not checks.kind(path, "counts.json").ok
    assert calls == ["counts.json", "counts.json"]
