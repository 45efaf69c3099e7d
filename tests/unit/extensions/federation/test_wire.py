"""The compact wire format of a site half, and the combine's path for halves with one list.

Real halves of every task (computed here from small in-memory cohorts, with
disclosure control withholding some values as NaN) must come back from the
format exactly as they went in: the same arrays with the same dtypes and
shapes, NaN where NaN, the same counts, keys, suppressions and metadata, and
the same as a JSON trip gives. Keys left out are taken from the lists the
reader holds, by digest; every malformed message is a WireError that says
what is wrong. The combine's fast path (every site holding the same list)
must give the very result of the key-by-key path.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from extensions.federation import wire
from extensions.federation.tasks import allele_frequencies as af_module
from extensions.federation.tasks import regression as rg
from extensions.federation.tasks.allele_frequencies import AlleleFrequencies
from extensions.federation.tasks.base import (
    DisclosureRules,
    SiteHalf,
    Suppression,
    TaskError,
    shared_variants,
)
from extensions.federation.tasks.cohort_counts import CohortCounts
from extensions.federation.tasks.gwas_linear import GwasLinear
from extensions.federation.tasks.gwas_logistic import GwasLogistic
from tests.unit.extensions.federation.test_tasks_gwas import ArrayCohort

RULES = DisclosureRules(min_cell_count=5, min_minor_allele_count=5)
AGE_BANDS = ["20-29", "30-39", "40-49", "50-59", "60-69", "70-79"]


def make_cohorts(seed=3, sizes=(120, 90, 150), variants=80):
    """Three sites holding the same variants, some rare (withheld at a site), missing calls."""
    rng = np.random.default_rng(seed)
    keys = [f"chr20:{5000 + 31 * i}:C:T" for i in range(variants)]
    freq = np.concatenate([rng.uniform(0.05, 0.5, variants - 8), np.full(8, 0.004)])
    out = []
    for s, n in enumerate(sizes):
        G = rng.binomial(2, freq[:, None], size=(variants, n)).astype(float)
        G[rng.random(G.shape) < 0.004] = np.nan
        age = rng.integers(0, len(AGE_BANDS), n)
        male = rng.integers(0, 2, n)
        eta = -0.5 + 0.2 * age + 0.3 * male + 0.5 * np.nan_to_num(G[0])
        samples = pd.DataFrame(
            {
                "age_band": [AGE_BANDS[a] for a in age],
                "sex": np.where(male == 1, "male", "female"),
                "prefecture": "Tokyo",
                "disease_name": "Essential hypertension",
                "icd10": "I10",
                "region": "Kanto",
                "quant_trait": 0.3 * age + 0.2 * male + rng.normal(0, 1, n),
                "case_status": pd.array(
                    (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), dtype="Int64"
                ),
            },
            index=pd.Index([f"P{s}-{i:04d}" for i in range(n)], name="sample_id"),
        )
        out.append(ArrayCohort(f"site{s}", samples, G, keys))
    return out


def halves_of(task, cohorts, params, state=None, rules=RULES):
    return [task.disclose(task.site_half(c, params, state), rules) for c in cohorts]


def logistic_rounds(cohorts):
    """The halves of every phase of a logistic fit (setup, null model, variants)."""
    task = GwasLogistic()
    params = task.validate({})
    state = task.initial_state(params)
    rounds = {}
    for _ in range(task.max_rounds):
        halves = halves_of(task, cohorts, params, state)
        rounds.setdefault(state["phase"], halves)
        step = task.combine(halves, params, state)
        if step.done:
            return rounds
        state = step.state
    raise AssertionError("did not finish")


def every_tasks_halves():
    cohorts = make_cohorts()
    af, cc, lin = AlleleFrequencies(), CohortCounts(), GwasLinear()
    out = {
        "allele_frequencies": halves_of(af, cohorts, af.validate({})),
        "allele_frequencies_by_sex": halves_of(af, cohorts, af.validate({"stratify_by": "sex"})),
        "allele_frequencies_no_variants": halves_of(af, cohorts, af.validate({"variants": "chr9"})),
        "cohort_counts": halves_of(
            cc, make_cohorts(sizes=(40, 30, 50)), cc.validate({"by": ["age_band", "sex"]})
        ),
        "gwas_linear": halves_of(lin, cohorts, lin.validate({})),
    }
    for phase, halves in logistic_rounds(cohorts).items():
        out[f"gwas_logistic_{phase}"] = halves
    return out


HALVES = every_tasks_halves()


def assert_same_half(got: SiteHalf, want: SiteHalf):
    assert (got.site, got.dataset, got.engine) == (want.site, want.dataset, want.engine)
    assert list(got.arrays) == list(want.arrays)
    for name, a in want.arrays.items():
        b = got.arrays[name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        np.testing.assert_array_equal(b, a, err_msg=name)  # NaN where NaN
    assert got.counts == want.counts
    assert got.variants == want.variants
    assert got.suppressed == want.suppressed
    assert got.meta == want.meta


# ---------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("kind", sorted(HALVES))
def test_every_tasks_halves_come_back_exactly(kind):
    for half in HALVES[kind]:
        got = wire.decode_half(wire.encode_half(half))
        assert_same_half(got, half)
        # and as a JSON trip gives them
        assert_same_half(got, SiteHalf.from_json(json.loads(json.dumps(half.to_json()))))


def test_the_halves_hold_what_the_round_trips_must_keep():
    """The halves above withhold values (NaN), list suppressions, and one has no variants."""
    af = HALVES["allele_frequencies"]
    assert any(np.isnan(h.arrays["ac"]).any() for h in af)
    assert any(h.suppressed for h in af)
    assert HALVES["allele_frequencies_no_variants"][0].variants == []
    assert HALVES["allele_frequencies_no_variants"][0].arrays["ac"].shape == (0, 1)
    assert any(np.isnan(h.arrays["count:age_band x sex"]).any() for h in HALVES["cohort_counts"])
    assert {"gwas_logistic_setup", "gwas_logistic_null", "gwas_logistic_variants"} <= set(HALVES)
    fisher = HALVES["gwas_logistic_variants"][0].arrays["fisher"]
    assert fisher.ndim == 3 and fisher.shape[0] > 0


def test_nan_infinities_and_every_numeric_dtype_survive():
    arrays = {
        "f8": np.array([[1.5, np.nan], [-np.inf, np.inf]]),
        "f4": np.array([np.nan, 2.5], dtype=np.float32),
        "i8": np.array([-(2**62), 7], dtype=np.int64),
        "u1": np.array([0, 255], dtype=np.uint8),
        "b": np.array([True, False, True]),
        "big_endian": np.array([1.0, np.nan], dtype=">f8"),
        "scalar": np.array(3.25),
        "empty": np.zeros((0, 4)),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    }
    half = SiteHalf("nig", "JGAD000101", "dask", arrays=arrays, variants=["chr20:1:A:G"])
    got = wire.decode_half(wire.encode_half(half))
    for name, a in arrays.items():
        assert got.arrays[name].shape == a.shape, name
        assert got.arrays[name].dtype == a.dtype.newbyteorder("="), name
        np.testing.assert_array_equal(got.arrays[name], a, err_msg=name)
        assert got.arrays[name].flags.writeable, name


def test_a_half_with_no_arrays_and_no_variants():
    half = SiteHalf("nig", "JGAD000101", "hail", counts={"n": 12}, meta={"phase": "null"})
    assert_same_half(wire.decode_half(wire.encode_half(half)), half)


def test_arrays_are_aligned_and_little_endian():
    half = HALVES["gwas_linear"][0]
    data = wire.encode_half(half)
    _, _, length = wire.PREFIX.unpack_from(data)
    header = json.loads(data[wire.PREFIX.size : wire.PREFIX.size + length])
    start = -(-(wire.PREFIX.size + length) // wire.ALIGN) * wire.ALIGN
    for spec in header["arrays"]:
        assert spec["offset"] % wire.ALIGN == 0 and spec["dtype"][0] in "<|"
        raw = data[start + spec["offset"] : start + spec["offset"] + spec["length"]]
        a = np.frombuffer(raw, dtype=spec.get("stored", spec["dtype"])).reshape(spec["shape"])
        np.testing.assert_array_equal(a, half.arrays[spec["name"]])
    assert header["variants"]["digest"] == wire.variants_digest(half.variants)
    assert header["variants"]["count"] == len(half.variants)


@pytest.mark.parametrize("kind", ["allele_frequencies", "gwas_linear", "gwas_logistic_variants"])
def test_binary_is_smaller_than_json(kind):
    half = HALVES[kind][0]
    as_json = len(json.dumps(half.to_json()).encode())
    with_keys = len(wire.encode_half(half))
    without = len(wire.encode_half(half, omit_variants=True))
    assert without <= with_keys < as_json


def test_whole_numbers_travel_as_float32_and_come_back_as_they_were():
    counts = np.array([0.0, 17.0, np.nan, 2048.0])
    big = np.array([0.0, 2049.0, np.nan, 2.0**24])
    huge = np.array([0.0, 2.0**24 + 1])
    fractions = np.array([0.5, 0.1, np.nan])
    arrays = {"counts": counts, "big": big, "fractions": fractions, "f4": np.float32([0.1])}
    arrays["huge"] = huge
    data = wire.encode_half(SiteHalf("nig", "D", "dask", arrays=arrays))
    header, _ = parts(data)
    stored = {a["name"]: a.get("stored") for a in header["arrays"]}
    assert stored == {"counts": "<f4", "big": "<f4", "fractions": None, "f4": None, "huge": None}
    got = wire.decode_half(data)
    for name, a in arrays.items():
        assert got.arrays[name].dtype == a.dtype
        np.testing.assert_array_equal(got.arrays[name], a)


# ---------------------------------------------------------------------------
# digests and keys left out


def test_the_digest_names_the_list():
    keys = ["chr20:1:A:G", "chr20:2:C:T"]
    digest = wire.variants_digest(keys)
    assert len(digest) == 32 and wire.DIGEST_RE.match(digest)
    assert digest == wire.variants_digest(list(keys))
    assert digest != wire.variants_digest(keys[::-1])
    assert digest != wire.variants_digest(keys[:1])
    with pytest.raises(ValueError, match="newline"):
        wire.variants_digest(["chr20:1:A:G\nchr20:2:C:T"])


def test_keys_left_out_are_the_readers_own_list():
    half = HALVES["allele_frequencies"][0]
    known = wire.KnownVariants()
    digest = wire.variants_digest(half.variants)
    held = known.add(digest, list(half.variants))
    got, got_digest = wire.read_half(wire.encode_half(half, omit_variants=True), known)
    assert got.variants is held and got_digest == digest
    assert_same_half(got, half)
    # keys that were sent but are held already: the held list too (one list for every site)
    got = wire.decode_half(wire.encode_half(half), known)
    assert got.variants is held
    # a digest passed in by the writer leaves the keys out without reading them
    data = wire.encode_half(half, omit_variants=True, digest=digest)
    assert data == wire.encode_half(half, omit_variants=True)


def test_keys_left_out_for_a_digest_the_reader_does_not_hold():
    half = HALVES["allele_frequencies"][0]
    data = wire.encode_half(half, omit_variants=True)
    digest = wire.variants_digest(half.variants)
    for known in (None, {}, {wire.variants_digest(["chr1:1:A:G"]): ["chr1:1:A:G"]}):
        with pytest.raises(wire.WireError, match=f"left out for digest {digest}"):
            wire.decode_half(data, known)
    # a held list of another length under that digest is not taken
    with pytest.raises(wire.WireError, match="left out"):
        wire.decode_half(data, {digest: half.variants[:-1]})


def test_known_variants_are_bounded_most_recent_first():
    known = wire.KnownVariants(max_lists=2, max_keys=5)
    lists = {f"{i:032x}": [f"chr1:{i}:A:G"] * (i + 1) for i in range(4)}
    for digest, keys in lists.items():
        known.add(digest, keys)
    assert known.digests() == [f"{3:032x}"]  # four keys and three more are over max_keys
    known = wire.KnownVariants(max_lists=2)
    a, b, c = list(lists)[:3]
    known.add(a, lists[a])
    known.add(b, lists[b])
    assert known[a] is lists[a]  # used: now the most recent
    known.add(c, lists[c])
    assert known.digests() == [c, a] and b not in known
    assert known.add(a, ["another list"]) is lists[a]


def test_the_gateways_digest_cache_compares_the_lists():
    cache = wire.DigestCache(max_slots=2)
    keys = [f"chr20:{i}:A:G" for i in range(50)]
    slot = ("JGAD000101", "dask", "v1")
    assert cache.digest(slot, keys) == wire.variants_digest(keys)
    assert cache.digest(slot, list(keys)) == wire.variants_digest(keys)
    changed = keys[:-1]  # the same slot, other keys (a selection, or data changed in place)
    assert cache.digest(slot, changed) == wire.variants_digest(changed)
    for i in range(3):
        cache.digest(("other", "dask", str(i)), keys)
    assert len(cache._slots) == 2


@pytest.mark.parametrize(
    ("accept", "binary"),
    [
        (None, False),
        ("application/json", False),
        ("*/*", False),
        (f"{wire.MEDIA_TYPE}, application/json", True),
        (f"application/json;q=0.9, {wire.MEDIA_TYPE.upper()}", True),
        (f"{wire.MEDIA_TYPE};q=0", False),
        (f"{wire.MEDIA_TYPE}; q=0.5", True),
        (f"{wire.MEDIA_TYPE};q=bad", False),
    ],
    ids=["none", "json", "any", "both", "case", "q0", "q-half", "q-bad"],
)
def test_accept_header(accept, binary):
    assert wire.accepts_binary(accept) is binary


@pytest.mark.parametrize(
    "value",
    ["0" * 32, ["0" * 31], ["G" * 32], ["A" * 32], [32], ["0" * 32] * 33, {"d": "0" * 32}],
    ids=["not-a-list", "short", "not-hex", "upper-case", "number", "too-many", "object"],
)
def test_variants_known_is_checked(value):
    with pytest.raises(ValueError, match="^variants_known: a list of at most 32"):
        wire.known_digests(value)


def test_variants_known_accepted():
    assert wire.known_digests(None) == set()
    assert wire.known_digests(["0123456789abcdef" * 2] * 32) == {"0123456789abcdef" * 2}


def test_small_halves_stay_json():
    assert not wire.worth_binary(HALVES["cohort_counts"][0])
    assert not wire.worth_binary(HALVES["gwas_logistic_null"][0])
    assert wire.worth_binary(HALVES["gwas_linear"][0])
    keys = [f"chr20:{i}:A:G" for i in range(256)]
    assert wire.worth_binary(SiteHalf("nig", "D", "dask", variants=keys))


def test_encoding_refuses_what_the_format_cannot_carry():
    half = SiteHalf("nig", "D", "dask", arrays={"labels": np.array(["a", "b"])})
    with pytest.raises(ValueError, match="array labels: dtype <U1 is not numeric"):
        wire.encode_half(half)
    half = SiteHalf("nig", "D", "dask", variants=["chr1:1:A:G\n"])
    with pytest.raises(ValueError, match="newline"):
        wire.encode_half(half)


# ---------------------------------------------------------------------------
# malformed messages


SAMPLE = SiteHalf(
    "nig",
    "JGAD000101",
    "dask",
    arrays={"ac": np.array([[1.0, np.nan], [3.0, 4.0]]), "n": np.array([7, 9])},
    counts={"n_selected": 40},
    variants=["chr20:1:A:G", "chr20:2:C:T"],
    suppressed=[Suppression("nig", "variant", 1, "min_minor_allele_count=5")],
    meta={"strata": ["female", "male"]},
)


def parts(data: bytes) -> tuple[dict, bytes]:
    _, _, length = wire.PREFIX.unpack_from(data)
    start = -(-(wire.PREFIX.size + length) // wire.ALIGN) * wire.ALIGN
    return json.loads(data[wire.PREFIX.size : wire.PREFIX.size + length]), data[start:]


def message(header, body: bytes, version=wire.VERSION, magic=wire.MAGIC) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    start = -(-(wire.PREFIX.size + len(raw)) // wire.ALIGN) * wire.ALIGN
    prefix = wire.PREFIX.pack(magic, version, len(raw)) + raw
    return prefix + b"\0" * (start - len(prefix)) + body


def with_header(change) -> bytes:
    header, body = parts(wire.encode_half(SAMPLE))
    change(header)
    return message(header, body)


def test_the_rewritten_sample_still_reads():
    assert_same_half(wire.decode_half(with_header(lambda h: None)), SAMPLE)


def _array(name):
    def get(header):
        return next(a for a in header["arrays"] if a["name"] == name)

    return get


MALFORMED = {
    "empty": (b"", "truncated: 0 bytes, less than the 12-byte prefix"),
    "short-prefix": (wire.encode_half(SAMPLE)[:7], "truncated: 7 bytes"),
    "bad-magic": (b"{" + wire.encode_half(SAMPLE)[1:], "not a site half: magic"),
    "json-body": (json.dumps(SAMPLE.to_json()).encode(), "not a site half: magic"),
    "version": (
        message(*parts(wire.encode_half(SAMPLE)), version=2),
        "format version 2; this reader knows version 1",
    ),
    "truncated-header": (wire.encode_half(SAMPLE)[:40], "truncated: a header of"),
    "truncated-data": (
        wire.encode_half(SAMPLE)[:-5],
        r"variants: bytes \d+ to \d+ lie outside the \d+ bytes of data",
    ),
    "no-data": (message(b"{}", b"")[: wire.PREFIX.size + 2], "truncated: the data start at"),
    "header-not-json": (message(b"{not json", b""), "header: not JSON"),
    "header-not-utf8": (message(b'{"\xff": 1}', b""), "header: not JSON"),
    "header-a-list": (message(b"[]", b""), "header: not a JSON object"),
    "no-site": (with_header(lambda h: h.pop("site")), "header: site must be a string"),
    "counts-a-list": (
        with_header(lambda h: h.update(counts=[1])),
        "header: counts must be an object",
    ),
    "count-not-a-number": (
        with_header(lambda h: h.update(counts={"n": "many"})),
        "header: counts or suppressed malformed",
    ),
    "suppression-malformed": (
        with_header(lambda h: h.update(suppressed=[{"site": "nig"}])),
        "header: counts or suppressed malformed",
    ),
    "arrays-an-object": (
        with_header(lambda h: h.update(arrays={"ac": {}})),
        "header: arrays must be a list",
    ),
    "array-not-an-object": (
        with_header(lambda h: h["arrays"].append("ac")),
        "arrays: each entry must be an object",
    ),
    "array-without-name": (
        with_header(lambda h: _array("ac")(h).pop("name")),
        "arrays: an entry without a name",
    ),
    "array-twice": (
        with_header(lambda h: h["arrays"].append(dict(_array("n")(h)))),
        "array n: named twice",
    ),
    "offset-beyond": (
        with_header(lambda h: _array("n")(h).update(offset=4096)),
        r"array n: bytes 4096 to \d+ lie outside the \d+ bytes of data",
    ),
    "offset-negative": (
        with_header(lambda h: _array("n")(h).update(offset=-8)),
        r"array n: bytes -8 to -?\d+ lie outside",
    ),
    "offset-not-a-number": (
        with_header(lambda h: _array("n")(h).update(offset="0")),
        "array n: offset must be a whole number",
    ),
    "offset-a-bool": (
        with_header(lambda h: _array("n")(h).update(offset=True)),
        "array n: offset must be a whole number",
    ),
    "length-and-shape-disagree": (
        with_header(lambda h: _array("ac")(h).update(shape=[2, 3])),
        r"array ac: \d+ bytes, but shape \[2, 3\] of <f\d needs \d+",
    ),
    "shape-negative": (
        with_header(lambda h: _array("ac")(h).update(shape=[-2, -2])),
        "array ac: shape must be a list of whole numbers",
    ),
    "dtype-object": (
        with_header(lambda h: _array("n")(h).update(dtype="|O")),
        "array n: dtype '|O' is not a little-endian number",
    ),
    "dtype-text": (
        with_header(lambda h: _array("n")(h).update(dtype="<U4")),
        "array n: dtype '<U4' is not a little-endian number",
    ),
    "dtype-structured": (
        with_header(lambda h: _array("n")(h).update(dtype="<i4,<i4")),
        "array n: dtype '<i4,<i4' is not a little-endian number",
    ),
    "dtype-big-endian": (
        with_header(lambda h: _array("ac")(h).update(dtype=">f8")),
        "array ac: dtype '>f8' is not a little-endian number",
    ),
    "dtype-garbage": (
        with_header(lambda h: _array("ac")(h).update(dtype="float128x")),
        "array ac: dtype 'float128x' is not a little-endian number",
    ),
    "dtype-missing": (
        with_header(lambda h: _array("ac")(h).pop("dtype")),
        "array ac: dtype None is not a little-endian number",
    ),
    "no-variants": (with_header(lambda h: h.pop("variants")), "header: variants must be an object"),
    "digest-not-hex": (
        with_header(lambda h: h["variants"].update(digest="z" * 32)),
        "variants: digest must be 32 lower-case hex digits",
    ),
    "keys-do-not-match-digest": (
        with_header(lambda h: h["variants"].update(digest="0" * 32)),
        "variants: the keys do not match their digest",
    ),
    "key-count-wrong": (
        with_header(lambda h: h["variants"].update(count=3)),
        "variants: 2 keys, the header says 3",
    ),
    "key-count-negative": (
        with_header(lambda h: h["variants"].update(count=-1)),
        "variants: count must not be negative",
    ),
    "keys-beyond-data": (
        with_header(lambda h: h["variants"].update(length=10_000)),
        r"variants: bytes \d+ to 10\d\d\d lie outside",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_say_what_is_wrong(name):
    data, words = MALFORMED[name]
    with pytest.raises(wire.WireError) as e:
        wire.decode_half(data)
    assert re.search(words, str(e.value)), str(e.value)


def test_keys_that_are_not_utf8():
    header, body = parts(wire.encode_half(SAMPLE))
    spec = header["variants"]
    keys = b"chr20:1:A:G\n\xffchr20:2"
    body = body[: spec["offset"]] + keys
    spec.update(length=len(keys), digest=wire._digest(keys))
    with pytest.raises(wire.WireError, match="variants: the keys are not UTF-8"):
        wire.decode_half(message(header, body))


def test_a_wire_error_is_a_value_error():
    assert issubclass(wire.WireError, ValueError)


# ---------------------------------------------------------------------------
# the combine's fast path: every site holds the same list


def slow_path(monkeypatch):
    """The key-by-key path whatever the lists (what halves of different lists take)."""
    monkeypatch.setattr(af_module, "shared_variants", lambda lists: None)
    monkeypatch.setattr(rg, "shared_variants", lambda lists: None)


def over_the_wire(halves, known):
    return [wire.read_half(wire.encode_half(h), known)[0] for h in halves]


def test_halves_read_against_one_list_share_it():
    halves = HALVES["allele_frequencies"]
    known = wire.KnownVariants()
    known.add(wire.variants_digest(halves[0].variants), list(halves[0].variants))
    read = over_the_wire(halves, known)
    assert all(h.variants is read[0].variants for h in read)
    assert shared_variants([h.variants for h in read]) is read[0].variants
    assert shared_variants([h.variants for h in halves]) == halves[0].variants  # equal lists
    assert shared_variants([["a"], ["b"]]) is None
    assert shared_variants([]) is None


@pytest.mark.parametrize("by", [None, "sex", "age_band"])
def test_allele_frequencies_fast_path_equals_the_key_by_key_path(by, monkeypatch):
    task = AlleleFrequencies()
    params = task.validate({"stratify_by": by} if by else {})
    halves = halves_of(task, make_cohorts(), params)
    assert any(np.isnan(h.arrays["ac"]).any() for h in halves)  # withheld cells among them
    fast = task.combine(halves, params, None).result
    slow_path(monkeypatch)
    slow = task.combine(halves, params, None).result
    xr.testing.assert_identical(fast, slow)
    assert int(fast.attrs["n_withheld_pooled"]) > 0


def permuted(half: SiteHalf, order: np.ndarray, per_variant) -> SiteHalf:
    arrays = {k: (v[order] if k in per_variant else v) for k, v in half.arrays.items()}
    return SiteHalf(
        half.site,
        half.dataset,
        half.engine,
        arrays,
        dict(half.counts),
        [half.variants[i] for i in order],
        list(half.suppressed),
        dict(half.meta),
    )


def test_allele_frequencies_with_a_site_in_another_order_equals_the_fast_path():
    task = AlleleFrequencies()
    params = task.validate({"stratify_by": "sex"})
    halves = halves_of(task, make_cohorts(), params)
    fast = task.combine(halves, params, None).result
    order = np.random.default_rng(1).permutation(len(halves[0].variants))
    halves[2] = permuted(halves[2], order, ("ac", "an", "n_called"))
    assert shared_variants([h.variants for h in halves]) is None
    xr.testing.assert_identical(task.combine(halves, params, None).result, fast)


def test_allele_frequencies_with_different_lists_is_the_same_either_way(monkeypatch):
    """Sites lacking variants: the key-by-key path, and a site's own variant NaN elsewhere."""
    task = AlleleFrequencies()
    params = task.validate({})
    halves = halves_of(task, make_cohorts(), params)
    keep = np.array([i for i in range(len(halves[1].variants)) if i % 7])
    halves[1] = permuted(halves[1], keep, ("ac", "an", "n_called"))
    result = task.combine(halves, params, None).result
    lacking = halves[0].variants[0]
    assert int(result.n_sites.sel(variant=lacking)) == 2
    slow_path(monkeypatch)
    xr.testing.assert_identical(task.combine(halves, params, None).result, result)


def test_gwas_linear_fast_path_equals_the_key_by_key_path(monkeypatch):
    task = GwasLinear()
    params = task.validate({})
    halves = halves_of(task, make_cohorts(), params)
    assert any(np.isnan(h.arrays["n_obs"]).any() for h in halves)
    fast = task.combine(halves, params, None).result
    assert (fast["withheld_at"] != "").any()
    order = np.random.default_rng(2).permutation(len(halves[0].variants))
    reordered = [*halves[:2], permuted(halves[2], order, rg.LINEAR_PER_VARIANT)]
    pd.testing.assert_frame_equal(task.combine(reordered, params, None).result, fast)
    slow_path(monkeypatch)
    slow = task.combine(halves, params, None).result
    pd.testing.assert_frame_equal(fast, slow)
    assert fast.attrs == slow.attrs


def run_logistic(cohorts):
    task = GwasLogistic()
    params = task.validate({})
    state = task.initial_state(params)
    for _ in range(task.max_rounds):
        step = task.combine(halves_of(task, cohorts, params, state), params, state)
        if step.done:
            return step.result
        state = json.loads(json.dumps(step.state))
    raise AssertionError("did not finish")


def test_gwas_logistic_fast_path_equals_the_key_by_key_path(monkeypatch):
    fast = run_logistic(make_cohorts())
    slow_path(monkeypatch)
    slow = run_logistic(make_cohorts())
    pd.testing.assert_frame_equal(fast, slow)
    assert fast["beta"].notna().any() and fast["beta"].isna().any()


def test_key_columns_split_every_key_at_once_and_keep_a_symbolic_alt_whole():
    from extensions.federation.tasks.allele_frequencies import key_columns

    keys = ["chr20:5000:C:T", "chrX:100:AT:A,C"]
    contig, position, ref, alt = key_columns(keys)
    assert (contig, ref, alt) == (["chr20", "chrX"], ["C", "AT"], ["T", "A,C"])
    assert position.dtype == np.int64 and position.tolist() == [5000, 100]
    # an alt holding ":": key by key, the alt whole
    contig, position, ref, alt = key_columns(["chr1:7:A:<DEL:ME>", *keys])
    assert alt == ["<DEL:ME>", "T", "A,C"] and position.tolist() == [7, 5000, 100]
    with pytest.raises(TaskError, match="variant key 'chr1:9:G' is not contig:pos:ref:alt"):
        key_columns(["chr1:7:A:<DEL:ME>", "chr1:9:G", *keys])
    assert [len(c) for c in key_columns([])] == [0, 0, 0, 0]


def test_take_rows_of_every_row_in_order_is_a_copy():
    a = np.array([[1.0, np.nan], [3.0, 4.0]])
    got = rg.take_rows(a, np.arange(2))
    np.testing.assert_array_equal(got, a)
    assert got is not a and not np.shares_memory(got, a)
    np.testing.assert_array_equal(rg.take_rows(a, np.array([1, -1])), [[3.0, 4.0], [np.nan] * 2])
    np.testing.assert_array_equal(rg.take_rows(a, np.array([1, 0])), a[::-1])


def test_an_answer_is_as_large_for_twice_the_people():
    """Counts of 1,000 people and of 2,000 travel in the same bytes (float16 would hold only
    the first), so what leaves a site does not grow with its people."""
    rng = np.random.default_rng(7)
    sizes = []
    for n in (1000, 2000):
        an = np.full(5000, 2.0 * n)
        ac = rng.integers(0, n, 5000).astype(float)
        half = SiteHalf("nig", "D", "dask", arrays={"ac": ac, "an": an}, variants=[])
        sizes.append(len(wire.encode_half(half)))
    assert sizes[0] == sizes[1]
