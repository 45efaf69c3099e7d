"""The automatic checks of a file in an export request, with the real recogniser.

Rules checked: "Publication" (results may leave, the data never; clinical details
only the minimum and never identifying) and the platform's small-count rules
(min_cell_count, min_minor_allele_count, dominance), as the federation applies
them to its answers: a file's kind is one the platform lets out and its content
agrees with its name; the recogniser, with the site's cohort, finds no raw data,
no person, no per-person rows, no genotype matrix and nothing it cannot read; the
tables of a CSV, TSV, JSON or notebook keep the small-count rules. Each failure
says what was found and where.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path

import pytest

from extensions.contracts.export import CHECKS, ExportRules
from extensions.guard.export.checks import FileChecks
from extensions.guard.recognise import Cohort, Recogniser
from tests.unit.extensions.guard.test_recognise import (
    CLINICAL,
    CLINICAL_NO_IDS,
    IDS,
    MATRIX_CSV,
    VCF,
    VOCABULARY,
    gwas_table,
    pdf,
    png,
    summary_notebook,
    svg_plot,
    write_dataset,
)


@pytest.fixture(scope="module")
def checks() -> FileChecks:
    return FileChecks(ExportRules(), Recogniser(Cohort.from_ids(IDS, VOCABULARY)))


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def result(checks, tmp_path, name, content):
    path = write(tmp_path, name, content)
    return {c.check: c for c in checks(path, name, path.stat().st_size)}


COUNTS = "sex,age_band,n\nfemale,40-49,120\nfemale,50-59,98\nmale,40-49,87\nmale,50-59,64\n"


# -- all four, in the contract's order -----------------------------------------------------


def test_every_check_runs_in_the_contracts_order(checks, tmp_path):
    path = write(tmp_path, "counts.csv", COUNTS)
    out = checks(path, "counts.csv", path.stat().st_size)
    assert [c.check for c in out] == list(CHECKS) and all(c.ok for c in out)
    assert checks.media_type(path, "counts.csv") == "text/csv"


# -- kind ------------------------------------------------------------------------------------

GOOD_KINDS = {
    "fig.png": png,
    "fig.jpg": lambda: b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + os.urandom(200),
    "fig.svg": lambda: svg_plot().encode(),
    "paper.pdf": pdf,
    "counts.csv": lambda: COUNTS.encode(),
    "counts.tsv": lambda: COUNTS.replace(",", "\t").encode(),
    "README.md": lambda: b"# Results\n\nPooled counts.\n",
    "notes.txt": lambda: "日本語のメモ\n".encode(),
    "report.html": lambda: b"<!DOCTYPE html><html><body><p>ok</p></body></html>",
    "summary.json": lambda: json.dumps({"n": 120}).encode(),
    "analysis.ipynb": lambda: summary_notebook().encode(),
}


@pytest.mark.parametrize("name", list(GOOD_KINDS))
def test_results_of_an_allowed_kind_pass(checks, tmp_path, name):
    r = result(checks, tmp_path, name, GOOD_KINDS[name]())
    assert r["kind"].ok, r["kind"]


BAD_KINDS = {
    # name: (content, what the detail says)
    "fig.png": (gzip.compress(VCF.encode()), "named .png but the content is gzip data"),
    "counts.csv": (gzip.compress(COUNTS.encode()), "named .csv but the content is gzip data"),
    "plot.jpg": (png(), "named .jpg but the content is PNG image"),
    "table.txt": (os.urandom(2000).replace(b"\x1f", b"\x00"), "binary content"),
    "data.json": (b"sex,n\nfemale,3\n", "text that is not JSON"),
    "a.ipynb": (b'{"x": 1}', "JSON that is not a notebook"),
    "fig.svg": (b"just text\n", "without an <svg> element"),
    "report.pdf": (b"hello", "named .pdf but the content is text"),
    "genotypes.vcf.gz": (gzip.compress(VCF.encode()), "'.gz' is not a kind the platform"),
    "Makefile": (b"all:\n", "no suffix is not a kind"),
    "arrays.npy": (b"\x93NUMPY", "'.npy' is not a kind"),
}


@pytest.mark.parametrize("name", list(BAD_KINDS))
def test_a_kind_not_allowed_or_content_unlike_its_name_fails(checks, tmp_path, name):
    content, detail = BAD_KINDS[name]
    r = result(checks, tmp_path, name, content)
    assert not r["kind"].ok and detail in r["kind"].detail, r["kind"]


def test_a_suffix_the_platform_adds_passes_unless_its_content_is_another_known_kind(tmp_path):
    rules = ExportRules(allowed_suffixes=(".csv", ".r"))
    c = FileChecks(rules, Recogniser(None))
    path = write(tmp_path, "plot.r", "plot(x)\n")
    assert c.kind(path, "plot.r").ok
    path = write(tmp_path, "hidden.r", gzip.compress(b"x" * 100))
    assert "gzip data" in c.kind(path, "hidden.r").detail


# -- size ------------------------------------------------------------------------------------


def test_size(tmp_path):
    c = FileChecks(ExportRules(max_file_bytes=100), Recogniser(None))
    assert c.size(100).ok and "100 bytes (limit 100)" == c.size(100).detail
    assert not c.size(101).ok and "over the limit of 100 bytes" in c.size(101).detail


# -- recogniser --------------------------------------------------------------------------------

INDIVIDUAL = {
    # name: (content, what the detail says)
    "clinical.csv": (CLINICAL.replace("\t", ","), "names 200 people of the cohort"),
    "rows.tsv": (CLINICAL_NO_IDS, "rows of clinical attributes"),
    "matrix.csv": (MATRIX_CSV, "rows of genotype codes"),
    "variants.txt": (VCF, "VCF"),
    "fig.png": (png() + gzip.compress(CLINICAL.encode()), "names"),
    "ids.json": (json.dumps({"samples": IDS[:3]}), "names 3 people of the cohort"),
    "hidden.txt": (base64.b64encode(os.urandom(4096)).decode(), "cannot be read here"),
    "notebook.ipynb": (
        json.dumps({"cells": [{"cell_type": "code", "source": "df", "metadata": {},
                               "outputs": [{"output_type": "stream", "name": "stdout",
                                            "text": CLINICAL}]}],
                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
        "people of the cohort",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(INDIVIDUAL))
def test_individual_level_content_fails_the_recogniser(checks, tmp_path, name):
    content, detail = INDIVIDUAL[name]
    r = result(checks, tmp_path, name, content)
    assert not r["recogniser"].ok and detail.lower() in r["recogniser"].detail.lower(), r[
        "recogniser"
    ]


@pytest.mark.parametrize(
    "name", ["fig.png", "fig.svg", "paper.pdf", "counts.csv", "analysis.ipynb"]
)
def test_results_pass_the_recogniser(checks, tmp_path, name):
    r = result(checks, tmp_path, name, GOOD_KINDS[name]())
    assert r["recogniser"].ok and r["recogniser"].detail == "no individual-level data"


def test_the_cohort_is_learnt_from_the_sites_datasets(tmp_path):
    write_dataset(tmp_path / "data" / "ds-nig", [f"NIG-{i:06d}" for i in range(1, 31)])
    c = FileChecks.for_site(ExportRules(), str(tmp_path / "data"))
    path = write(tmp_path, "one.txt", "the outlier was NIG-000007, see notes\n")
    r = c.recognise(path, "one.txt")
    assert not r.ok and "names 1 person of the cohort" in r.detail
    assert (
        FileChecks.for_site(ExportRules(), str(tmp_path / "data"), ["ds-other"])
        .recognise(path, "one.txt")
        .ok
    )


# -- disclosure ------------------------------------------------------------------------------


def disclosure(checks, tmp_path, name, content):
    return result(checks, tmp_path, name, content)["disclosure"]


def test_counts_at_or_over_the_minimum_pass(checks, tmp_path):
    d = disclosure(checks, tmp_path, "counts.csv", COUNTS)
    assert d.ok and d.detail == "1 table, 4 rows: within the rules"


@pytest.mark.parametrize(
    "column", ["n", "N", "count", "cases", "controls", "n_cases", "count_nig", "people_n"]
)
def test_a_small_count_cell_fails_naming_row_and_column(checks, tmp_path, column):
    table = f"sex,age_band,{column}\nfemale,40-49,120\nmale,90-99,3\nmale,80-89,0\n"
    d = disclosure(checks, tmp_path, "counts.csv", table)
    assert not d.ok
    assert d.detail == (
        f"1 cell(s) break the disclosure rules: row 2, column {column}: 3, a count under 5"
    )


def test_a_column_not_named_as_a_count_is_not_judged(checks, tmp_path):
    table = "chrom\tpos\tbeta\tse\tp\nchr1\t3\t0.1\t0.02\t1e-8\n"
    assert disclosure(checks, tmp_path, "gwas.tsv", table).ok
    assert disclosure(checks, tmp_path, "gwas.tsv", gwas_table()).ok


def test_a_rare_minor_allele_count_fails(checks, tmp_path):
    table = (
        "chrom,pos,ref,alt,AC,AN\nchr1,100,A,G,3,400\nchr1,200,C,T,398,400\nchr1,300,G,A,40,400\n"
    )
    d = disclosure(checks, tmp_path, "freq.csv", table)
    assert not d.ok
    assert "row 1, column AC: minor allele count 3 (AC 3 of AN 400), under 5" in d.detail
    assert "row 2, column AC: minor allele count 2 (AC 398 of AN 400)" in d.detail
    assert "2 cell(s)" in d.detail


def test_an_allele_count_without_an_and_a_mac_column_are_read_as_they_are(checks, tmp_path):
    d = disclosure(checks, tmp_path, "freq.csv", "id,mac\nrs1,4\nrs2,50\nrs3,0\n")
    assert not d.ok and "row 1, column mac: minor allele count 4, under 5" in d.detail
    assert "1 cell(s)" in d.detail


def test_a_dominant_contributor_fails(checks, tmp_path):
    table = (
        "disease,site,n\n"
        "E11,nig,950\nE11,ncc,30\nE11,tommo,20\n"  # nig holds 95% of 1000
        "I10,nig,400\nI10,ncc,350\nI10,tommo,250\n"
        "E11,total,1000\n"
    )
    d = disclosure(checks, tmp_path, "by_site.csv", table)
    assert not d.ok
    assert "row 1, column n: site nig holds 950 of the total 1000 for (E11) (95%)" in d.detail
    assert "over the dominance share of 90%" in d.detail and "1 cell(s)" in d.detail


def test_contributors_under_the_dominance_share_pass(checks, tmp_path):
    table = "site,n\nnig,400\nncc,350\ntommo,250\n"
    assert disclosure(checks, tmp_path, "by_site.csv", table).ok


def test_dominance_share_is_the_platforms(tmp_path):
    c = FileChecks(ExportRules(dominance_share=0.35), Recogniser(None))
    path = write(tmp_path, "by_site.csv", "site,n\nnig,400\nncc,350\ntommo,250\n")
    d = c.disclosure(path, "by_site.csv")
    assert not d.ok and "site nig holds 400 of the total 1000 (40%)" in d.detail


def test_many_failures_are_summed_up_short(checks, tmp_path):
    table = "g,n\n" + "".join(f"g{i},{i % 4 + 1}\n" for i in range(40))
    d = disclosure(checks, tmp_path, "counts.csv", table)
    assert d.detail.startswith("40 cell(s) break the disclosure rules: row 1, column n: 1")
    assert d.detail.endswith("and 37 more") and len(d.detail) < 300


def test_json_tables_are_checked(checks, tmp_path):
    records = [{"sex": "female", "n": 120}, {"sex": "male", "n": 2}]
    d = disclosure(checks, tmp_path, "counts.json", json.dumps({"counts": records}))
    assert not d.ok and "JSON table 1, row 2, column n: 2" in d.detail
    columns = {"sex": ["female", "male"], "n": [120, 98]}
    assert disclosure(checks, tmp_path, "counts.json", json.dumps(columns)).ok


def notebook_with_html(html: str) -> str:
    return json.dumps(
        {"cells": [{"cell_type": "markdown", "source": "# x", "metadata": {}},
                   {"cell_type": "code", "source": "t", "metadata": {}, "execution_count": 1,
                    "outputs": [{"output_type": "execute_result", "execution_count": 1,
                                 "metadata": {}, "data": {"text/html": html,
                                                          "text/plain": "t"}}]}],
         "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    )  # fmt: skip


def test_a_table_shown_in_a_notebook_is_checked(checks, tmp_path):
    pd = pytest.importorskip("pandas")
    small = pd.DataFrame({"sex": ["female", "male"], "n": [120, 3]}).set_index("sex")
    d = disclosure(checks, tmp_path, "a.ipynb", notebook_with_html(small.to_html()))
    assert not d.ok and "cell 2, output 1, table 1, row 2, column n: 3" in d.detail
    fine = pd.DataFrame({"sex": ["female", "male"], "n": [120, 98]})
    assert disclosure(checks, tmp_path, "a.ipynb", notebook_with_html(fine.to_html())).ok


def test_a_file_that_is_not_a_table_passes_disclosure(checks, tmp_path):
    for name in ("fig.png", "README.md", "paper.pdf"):
        d = disclosure(checks, tmp_path, name, GOOD_KINDS[name]())
        assert d.ok and d.detail == "not a table"
    d = disclosure(checks, tmp_path, "settings.json", json.dumps({"title": "x", "dpi": 300}))
    assert d.ok and d.detail == "no table found"


def test_a_table_longer_than_read_fails_and_says_so(checks, tmp_path, monkeypatch):
    from extensions.guard.export import tables

    monkeypatch.setattr(tables, "MAX_ROWS", 10)
    path = tmp_path / "long.csv"
    path.write_text("group,n\n" + "".join(f"g{i},50\n" for i in range(11)))
    result = checks.disclosure(path, "long.csv")
    assert not result.ok and "rest not checked" in result.detail
    # a table that fits is read whole, and its small cell anywhere is found
    path.write_text("group,n\n" + "".join(f"g{i},{3 if i == 9 else 50}\n" for i in range(10)))
    result = checks.disclosure(path, "long.csv")
    assert not result.ok and "rest not checked" not in result.detail


def test_a_large_table_is_read_row_by_row(checks, tmp_path, monkeypatch):
    """Memory stays with the rows read, whatever the file's size (a 1 GB table of results
    once took 5 GB: the whole text was read before its first rows were parsed)."""
    import tracemalloc

    from extensions.guard.export import tables

    monkeypatch.setattr(tables, "MAX_ROWS", 1_000)
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("variant,n\n")
        for i in range(200_000):
            f.write(f"1:{i}:A:G,{50 + i % 7}\n")
    tracemalloc.start()
    result = checks.disclosure(path, "big.csv")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not result.ok and "rest not checked" in result.detail
    assert peak < path.stat().st_size / 4, (peak, path.stat().st_size)
