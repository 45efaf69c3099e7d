"""The per-site summary cache: ingest writes it, allele-frequency halves of everyone read it.

A small synthetic site (60 people, 240 variants, VCF Zarr and MatrixTable,
through hub.data.synth and hub.data.ingest) answers every query both ways: from the
cache and from the genotype calls (`allele_frequencies.USE_SUMMARY` off).
The halves must be equal bit for bit, on Dask and on Hail, for each
stratification, with and without a variant selection. A cache that is
stale (another VCF, other people, changed clinical attributes) or damaged
is read past, with a log line, and the answer is still the full one.
"""

from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import pysam
import pytest

from extensions.federation import packed, summary
from extensions.federation.cohorts import HailCohort, ZarrCohort, open_cohort
from extensions.federation.tasks import allele_frequencies as af
from extensions.federation.tasks.allele_frequencies import AlleleFrequencies
from hub.data.ingest import ingest_dataset
from hub.data.synth import SiteSpec, generate_cohorts

SITE = SiteSpec("nig", "JGADT1", None, "Shizuoka")
TASK = AlleleFrequencies()
QUIET = {"say": lambda _msg: None}


@pytest.fixture(scope="module")
def hl(tmp_path_factory):
    from extensions.federation.hail_session import ensure_hail

    return ensure_hail(tmp_dir=tmp_path_factory.mktemp("hail"), cores=2)


@pytest.fixture(scope="module")
def site(tmp_path_factory, hl):
    """One site's dataset folder, written by synth, which ingests it (Zarr, MatrixTable, cache)."""
    root = tmp_path_factory.mktemp("site")
    generate_cohorts(
        root, [SITE], samples_per_site=60, variants=240, seed=11, raw_files=False,
        missing_rate=0.02,
    )  # fmt: skip
    return root / SITE.site_id / SITE.analysis_dataset


@pytest.fixture
def copy(site, tmp_path):
    """A private copy of the dataset folder to change (times kept, so ingest sees it up to date)."""
    dest = tmp_path / SITE.analysis_dataset
    shutil.copytree(site, dest)
    return dest


def half(folder, engine, params, use_summary, monkeypatch):
    """The half from the cache (and the packed calls), or (False) from the genotype calls."""
    monkeypatch.setattr(af, "USE_SUMMARY", use_summary)
    monkeypatch.setattr(packed, "USE", use_summary)
    cohort = open_cohort(folder, SITE.site_id, folder.name, engine)
    return TASK.site_half(cohort, TASK.validate(params), None)


def assert_same_half(a, b):
    assert a.variants == b.variants
    assert a.counts == b.counts
    for k in ("stratify_by", "strata"):
        assert a.meta[k] == b.meta[k]
    assert sorted(a.arrays) == sorted(b.arrays)
    for k, x in a.arrays.items():
        assert x.dtype == b.arrays[k].dtype and x.shape == b.arrays[k].shape, k
        assert np.array_equal(x, b.arrays[k]), k


def some_keys(folder):
    keys = ZarrCohort(folder, SITE.site_id, folder.name).zarr_variant_keys()
    return [*keys[3:200:17], "chr20:1:A:T"]  # and one the site does not hold


# ---------------------------------------------------------------------------
# the cached half equals the full computation


@pytest.mark.parametrize("engine", ["dask", "hail"])
@pytest.mark.parametrize("by", [None, "sex", "age_band", "region"])
@pytest.mark.parametrize("variants", ["all", "keys", "region"])
def test_cached_half_equals_the_full_one(site, engine, by, variants, monkeypatch):
    params = {"stratify_by": by}
    if variants == "keys":
        params["variants"] = some_keys(site)
    elif variants == "region":
        params["variants"] = "chr21"
    cached = half(site, engine, params, True, monkeypatch)
    full = half(site, engine, params, False, monkeypatch)
    assert cached.meta["source"] == "summary" and full.meta["source"] == "genotypes"
    assert_same_half(cached, full)
    assert len(cached.variants) > 1
    if engine == "hail":  # and the engines agree, as before
        assert_same_half(cached, half(site, "dask", params, False, monkeypatch))


def test_a_region_inside_a_contig_and_one_with_no_variants(site, monkeypatch):
    for region in ("chr20:1-30000000", "chr9"):
        params = {"stratify_by": "sex", "variants": region}
        cached = half(site, "dask", params, True, monkeypatch)
        assert cached.meta["source"] == "summary"
        assert_same_half(cached, half(site, "dask", params, False, monkeypatch))
    assert cached.variants == [] and cached.arrays["ac"].shape == (0, 2)


@pytest.mark.parametrize("engine", ["dask", "hail"])
def test_a_query_with_where_reads_the_genotypes(site, engine, monkeypatch):
    params = {"stratify_by": "age_band", "where": {"sex": "female"}}
    source = half(site, engine, params, True, monkeypatch).meta["source"]
    assert source == ("packed" if engine == "dask" else "genotypes")


@pytest.mark.parametrize("engine", ["dask", "hail"])
def test_variant_keys_from_the_cache_equal_the_slow_path(site, engine):
    cohort = open_cohort(site, SITE.site_id, site.name, engine)
    assert cohort.summary is not None
    slow = open_cohort(site, SITE.site_id, site.name, engine)
    slow.__dict__["summary"] = None  # as with no cache
    assert cohort.variant_keys() == slow.variant_keys()
    assert len(cohort.variant_keys()) == 240


def test_the_cache_holds_every_attribute_exactly(site):
    cohort = ZarrCohort(site, SITE.site_id, site.name)
    cache = cohort.summary
    assert cache.sample_ids == cohort.sample_ids
    assert cache.meta["variants"] == 240 and cache.meta["samples"] == 60
    for name in summary.ATTRIBUTES:
        labels, codes = summary._strata(cohort.samples, name)
        held = cache.meta["attributes"][name]
        assert held["labels"] == labels
        found = cache.counts(None if name == "all" else name, labels, codes)
        # the strata add up to everyone
        everyone = cache.counts(None, ["all"], np.zeros(60, dtype=np.int64))
        for what in ("ac", "n_called"):
            assert np.array_equal(found[what].sum(axis=1), everyone[what][:, 0])
        n_people = np.load(cache.path)[f"{name}.n_people"]
        assert n_people.tolist() == np.bincount(codes, minlength=len(labels)).tolist()
    assert oct(os.stat(cache.path).st_mode & 0o777) == oct(
        os.stat(site / "genotypes.vcf.gz").st_mode & 0o777
    )


# ---------------------------------------------------------------------------
# stale or damaged caches are read past


def assert_read_past(folder, params, monkeypatch, engines=("dask", "hail"), source="genotypes"):
    for engine in engines:
        got = half(folder, engine, params, True, monkeypatch)
        assert got.meta["source"] == source
        assert_same_half(got, half(folder, engine, params, False, monkeypatch))


def test_a_cache_of_another_vcf_is_ignored(copy, monkeypatch, caplog):
    vcf = copy / "genotypes.vcf.gz"
    later = vcf.stat().st_mtime + 5
    os.utime(vcf, (later, later))  # what a new VCF does to the dataset's version
    with caplog.at_level(logging.WARNING, "visiting.summary"):
        assert_read_past(copy, {"stratify_by": "region"}, monkeypatch)
    assert "computed for version" in caplog.text


def test_a_dataset_without_its_vcf_has_no_version_to_trust(copy, monkeypatch, caplog):
    (copy / "genotypes.vcf.gz").unlink()
    with caplog.at_level(logging.WARNING, "visiting.summary"):
        assert_read_past(copy, {"stratify_by": "sex"}, monkeypatch, engines=("dask",))
    assert "no version" in caplog.text


def rewrite_cache(folder, **changes):
    path = folder / summary.SUMMARY
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    np.savez_compressed(path, **arrays)


def test_a_cache_of_other_people_is_ignored(copy, monkeypatch, caplog):
    ids = ZarrCohort(copy, SITE.site_id, copy.name).sample_ids
    rewrite_cache(copy, samples=summary._blob(ids[1:] + ids[:1]))  # the same people, moved
    with caplog.at_level(logging.WARNING, "visiting.summary"):
        assert_read_past(copy, {"stratify_by": None, "variants": "chr22"}, monkeypatch)
    assert "sample ids differ" in caplog.text


def test_changed_clinical_attributes_are_not_answered_from_the_cache(copy, monkeypatch, caplog):
    clinical = copy / "clinical.tsv"
    lines = clinical.read_text().splitlines()
    first = lines[1].split("\t")
    first[2] = "male" if first[2] == "female" else "female"  # one person's sex corrected
    lines[1] = "\t".join(first)
    stamp = clinical.stat().st_mtime
    clinical.write_text("\n".join(lines) + "\n")
    os.utime(clinical, (stamp, stamp))  # even when the files look as they were
    with caplog.at_level(logging.WARNING, "visiting.summary"):
        # the calls are as they were: their packed copy still counts, by the sexes now
        assert_read_past(
            copy, {"stratify_by": "sex"}, monkeypatch, engines=("dask",), source="packed"
        )
    assert "strata of sex differ" in caplog.text
    # everyone's counts do not depend on it, and strata of other attributes still match
    for by in (None, "age_band"):
        cached = half(copy, "dask", {"stratify_by": by}, True, monkeypatch)
        assert cached.meta["source"] == "summary"
        assert_same_half(cached, half(copy, "dask", {"stratify_by": by}, False, monkeypatch))
    assert not summary.summary_is_current(copy)
    assert summary.ensure_summary(copy)  # ingest writes it anew
    assert half(copy, "dask", {"stratify_by": "sex"}, True, monkeypatch).meta["source"] == "summary"


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "a member damaged", "another format"],
)
def test_a_damaged_cache_is_ignored_with_a_log_line(copy, monkeypatch, caplog, damage):
    path = copy / summary.SUMMARY
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a cache" * 100)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "a member damaged":
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["region.ac"] = arrays["region.ac"][:10]
        np.savez_compressed(path, **arrays)
    else:
        with np.load(path) as npz:
            meta = summary._texts(npz["meta"])[0].replace('"format": 1', '"format": 99')
        rewrite_cache(copy, meta=summary._blob([meta]))
    with caplog.at_level(logging.WARNING, "visiting.summary"):
        if damage == "a member damaged":  # the rest of the cache, and the packed calls, hold
            assert_read_past(copy, {"stratify_by": "region"}, monkeypatch, ("dask",), "packed")
            assert_read_past(copy, {"stratify_by": "region"}, monkeypatch, ("hail",))
        else:
            assert_read_past(copy, {"stratify_by": "region"}, monkeypatch)
    assert f"summary cache {path}" in caplog.text


def test_no_cache_reads_the_genotypes(copy, monkeypatch):
    (copy / summary.SUMMARY).unlink()
    assert_read_past(copy, {"stratify_by": "age_band", "variants": "chr20"}, monkeypatch)
    assert len(ZarrCohort(copy, SITE.site_id, copy.name).variant_keys()) == 240


# ---------------------------------------------------------------------------
# ingest


def test_ingest_wrote_the_cache_and_keeps_it(copy):
    path = copy / summary.SUMMARY
    assert summary.summary_is_current(copy)
    before = path.stat()
    time.sleep(0.01)
    again = ingest_dataset(copy, **QUIET)
    assert again.skipped and again.summary == str(path) and "summary" not in again.seconds
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    forced = summary.ensure_summary(copy, force=True)
    assert forced and path.stat().st_ino != before.st_ino


def test_ingest_adds_the_cache_to_a_kept_dataset(copy):
    path = copy / summary.SUMMARY
    path.unlink()
    zarr_time = (copy / "genotypes.vcf.zarr").stat().st_mtime_ns
    result = ingest_dataset(copy, **QUIET)
    assert result.skipped and result.summary == str(path) and result.seconds["summary"] > 0
    assert (copy / "genotypes.vcf.zarr").stat().st_mtime_ns == zarr_time  # not rewritten
    assert summary.summary_is_current(copy)
    assert not list(copy.glob(f".{summary.SUMMARY}*"))  # no temporary file left


def test_no_cache_from_a_zarr_older_than_the_inputs(copy):
    path = copy / summary.SUMMARY
    path.unlink()
    stamp = time.time() + 10
    os.utime(copy / "phenotypes.tsv", (stamp, stamp))
    result = ingest_dataset(copy, zarr=False, matrix_table=False, **QUIET)
    assert result.summary is None and not path.exists()


def test_summary_off(copy):
    (copy / summary.SUMMARY).unlink()
    assert ingest_dataset(copy, summary=False, **QUIET).summary is None
    assert not (copy / summary.SUMMARY).exists()


# ---------------------------------------------------------------------------
# Hail's row order


def test_hail_order_is_locus_then_alleles():
    keys = ["chr20:5:A:G", "chr3:9:C:T", "chr20:5:A:C", "chr20:5:A:C,G", "chr20:2:T:A"]
    order = summary.hail_order(keys)
    assert [keys[i] for i in order] == [
        "chr3:9:C:T", "chr20:2:T:A", "chr20:5:A:C", "chr20:5:A:C,G", "chr20:5:A:G",
    ]  # fmt: skip
    assert summary.hail_order(["chr20:5:A:G", "chrUn_KI270302v1:1:A:C"]) is None
    assert summary.hail_order(["chr20:5:A:G", "chr20:5:A:G"]) is None


def write_vcf(folder, records, people):
    """A bgzipped, indexed VCF of `records` (chrom, pos, ref, alt, calls) and its tables."""
    folder.mkdir()
    lines = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c},length=100000000>" for c in ("chr3", "chr20")),
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                   *people]),
    ]  # fmt: skip
    for chrom, pos, ref, alt, calls in records:
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", ".", "GT", *calls]))
    plain = folder / "genotypes.vcf"
    plain.write_text("\n".join(lines) + "\n")
    pysam.tabix_compress(str(plain), str(folder / "genotypes.vcf.gz"))
    plain.unlink()
    pysam.tabix_index(str(folder / "genotypes.vcf.gz"), preset="vcf")
    sexes = ["female", "male"]
    (folder / "clinical.tsv").write_text(
        "sample_id\tage_band\tsex\tprefecture\tdisease_name\ticd10\n"
        + "".join(
            f"{p}\t{20 + 10 * (i % 3)}-{29 + 10 * (i % 3)}\t{sexes[i % 2]}\t"
            f"{['Tokyo', 'Osaka', 'Miyagi'][i % 3]}\tEssential hypertension\tI10\n"
            for i, p in enumerate(people)
        )
    )
    (folder / "phenotypes.tsv").write_text(
        "sample_id\tquant_trait\tcase_status\n"
        + "".join(f"{p}\t{i / 10}\t{i % 2}\n" for i, p in enumerate(people))
    )


def test_a_vcf_out_of_hails_order_is_answered_in_hails_order(tmp_path, hl, monkeypatch):
    rng = np.random.default_rng(3)
    people = [f"P{i:03d}" for i in range(12)]
    calls = ["0/0", "0/1", "1/1", "./.", "1/0"]

    def row():
        return [calls[i] for i in rng.integers(0, len(calls), len(people))]

    # contigs by name (chr20 before chr3), two records at one position with their ALTs
    # out of order, a multi-allelic record between them
    records = [
        ("chr20", 100, "A", "G", row()),
        ("chr20", 100, "A", "C,T", [c.replace("1/1", "2/1") for c in row()]),
        ("chr20", 100, "A", "C", row()),
        ("chr20", 250, "G", "T", row()),
        ("chr3", 7, "C", "A", row()),
        ("chr3", 9, "T", "G", row()),
    ]
    folder = tmp_path / "JGADT9"
    write_vcf(folder, records, people)
    result = ingest_dataset(folder, **QUIET)
    assert result.summary
    with np.load(folder / summary.SUMMARY) as npz:
        assert "hail_rows" in npz.files
    hail = HailCohort(folder, "nig", folder.name)
    assert hail.variant_keys()[:2] == ["chr3:7:C:A", "chr3:9:T:G"]
    for by in (None, "region"):
        for variants in (None, ["chr20:100:A:C", "chr3:9:T:G", "chr20:100:A:G"], "chr20:1-100"):
            params = {"stratify_by": by, "variants": variants}
            for engine in ("dask", "hail"):
                cached = half(folder, engine, params, True, monkeypatch)
                assert cached.meta["source"] == "summary"
                assert_same_half(cached, half(folder, engine, params, False, monkeypatch))
    slow = HailCohort(folder, "nig", folder.name)
    slow.__dict__["summary"] = None
    assert HailCohort(folder, "nig", folder.name).variant_keys() == slow.variant_keys()
