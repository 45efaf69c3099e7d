"""bench/federation.py's pure parts: its JSON document, its ratios and targets, the stub hub
a gateway asks, the worker's byte counter, the per-round timing, and the workload's writers.

The stub hub is checked with the gateway's own `Gateway.caller` and
`Gateway.approval_for` in this process, over HTTP on loopback; the workload's
direct writer against `hub.data.synth.generate_cohorts` and `hub.data.ingest` on a
tiny cohort (the same calls, people and tables, bit for bit).
"""

from __future__ import annotations

import asyncio
import gzip
import json

import numpy as np
import pytest

from bench import federation as fb
from bench import federation_data as data
from bench import federation_sites as sites
from bench import worker_bytes
from extensions.federation import gateway as gw
from extensions.federation.tasks.base import DisclosureRules
from tests.aio import run as run_async

# ---------------------------------------------------------------------------
# results as a size worker returns them


def size_result(samples: int, variants: int = 100_000, site_bytes: int = 1000) -> dict:
    def task(federated: float, rounds: int = 1) -> dict:
        return {
            "site_s": {"nig": federated / 2, "ncc": federated / 2 - 0.1},
            "combine_s": 0.1,
            "rounds": rounds,
            "federated_s": federated,
            "slowest_site_plus_combine_s": federated / 2 + 0.1,
            "wall_s": federated,
            "site_bytes": {"nig": site_bytes, "ncc": site_bytes + 10},
            "request_bytes": {"nig": 100, "ncc": 100},
            "worker_bytes": {
                "nig": {"get_data_bytes": 900, "get_data_calls": 3, "result_nbytes": 800},
                "ncc": {"get_data_bytes": 0, "get_data_calls": 0, "result_nbytes": 0},
            },
        }

    peaks = {"scheduler": 200, "nanny": 60, "gateway": 180, "workers": 700, "worker": 700}
    return {
        "sizes": {"sites": 2, "samples": samples, "variants": variants},
        "load_start": 1.0,
        "load_end": 1.5,
        "tasks": {
            "allele_frequencies": task(0.5),
            "allele_frequencies_where": task(2.0),
            "gwas_linear": task(4.0),
            "gwas_logistic": task(30.0, rounds=12),
        },
        "memory": {
            "sites": {"nig": peaks, "ncc": dict(peaks, worker=500, workers=500)},
            "client": 300,
            "plink2": 50,
        },  # fmt: skip
        "references": {
            "plink2": {
                "allele_frequencies": 1.0,
                "allele_frequencies_where": 1.0,
                "gwas_linear": 10.0,
                "gwas_logistic": 20.0,
            },  # fmt: skip
            "hail": {"allele_frequencies": 40.0, "gwas_linear": 70.0},
            "numpy_pooled": {t: 1.0 for t in fb.TASKS},
        },
        "not_run": {
            "plink2": {},
            "hail": {
                "allele_frequencies_where": "did not finish within 7200 s",
                "gwas_logistic": "estimated 5 h at this size",
            },
            "numpy_pooled": {},
        },
        "exact": {
            "gwas_linear/hail": {
                "beta": 2e-9,
                "standard_error": 1e-12,
                "p_value": 3e-10,
                "released": 9,
                "variants": 10,
                "n": 9,
            },  # fmt: skip
        },
        "run_s": 100.0,
    }


GEN = {"seconds": {"genotypes": 10.0, "summary caches": 2.0}}


def test_json_document_has_every_size_and_task_with_its_references():
    results = [size_result(2000), size_result(4000)]
    doc = fb.json_document(results, [GEN, GEN], started=0.0)
    json.dumps(doc)  # machine-readable as it is
    assert [(s["sites"], s["samples"], s["variants"]) for s in doc["sizes"]] == [
        (2, 2000, 100_000),
        (2, 4000, 100_000),
    ]
    for size in doc["sizes"]:
        assert set(size["tasks"]) == {
            "allele_frequencies",
            "allele_frequencies_where",
            "gwas_linear",
            "gwas_logistic",
        }
        for figures in size["tasks"].values():
            assert {"federated_s", "slowest_site_plus_combine_s", "references"} <= set(figures)
            assert set(figures["references"]) == {"plink2", "hail", "numpy_pooled"}
        linear = size["tasks"]["gwas_linear"]
        assert linear["federated_s"] == 4.0
        assert linear["references"] == {"plink2": 10.0, "hail": 70.0, "numpy_pooled": 1.0}
        logistic = size["tasks"]["gwas_logistic"]
        assert logistic["references"]["hail"] is None  # not run: never a number
        assert logistic["not_run"] == {"hail": "estimated 5 h at this size"}
        assert size["memory"]["worker_max"] == 700
        assert size["memory"]["sites_total"] == 2 * (200 + 60 + 180) + 700 + 500
        assert size["generation_s"] == 12.0


@pytest.mark.parametrize(
    ("a", "b", "text"),
    [
        (1.0, 2.0, "0.50x"),
        (3.0, 1.0, "3.00x"),
        (30.0, 2.0, "15x"),
        (None, 2.0, ""),
        (1.0, None, ""),
        (1.0, 0.0, ""),
    ],
    ids=["faster", "slower", "ten-fold-or-more", "no-federated", "not-run", "zero"],
)
def test_ratio_formatting(a, b, text):
    assert fb.fmt_ratio(a, b) == text


def test_seconds_and_bytes_formatting():
    assert fb.fmt_s(None) == "not run"
    assert fb.fmt_s(0.123) == "0.12"
    assert fb.fmt_s(1234.5) == "1234"
    assert fb.fmt_bytes(2 * 1024**3) == "2.00 GiB"
    assert fb.fmt_bytes(3 * 1024**2) == "3.00 MiB"
    assert fb.fmt_bytes(1536) == "1.5 KiB"
    assert fb.fmt_diff(0.0) == "0"
    assert fb.fmt_diff(float("nan")) == "n/a"


def test_targets_say_what_is_met_and_what_is_missed():
    small, double = size_result(2000), size_result(4000, site_bytes=1100)
    rows = {(name, size): (value, met) for name, size, value, met in fb.targets([small, double])}
    label = "2 x 2,000 x 100,000"
    assert rows[("allele_frequencies <= 1.0x plink2 --freq", label)] == ("0.50x", True)
    assert rows[("gwas_linear <= 0.5x plink2 --glm", label)] == ("0.40x", True)
    assert rows[("allele_frequencies >= 10x faster than Hail variant_qc", label)] == (
        "80.0x faster",
        True,
    )
    # a reference not run has no target row, rather than a made-up ratio
    assert not any(name.startswith("gwas_logistic faster") for name, _ in rows)
    assert rows[("gwas_linear exact to 1e-6 relative (Hail)", label)] == ("2.0e-09", True)
    pair = f"{label} -> 2 x 4,000 x 100,000"
    value, met = rows[("gwas_linear: bytes leaving the sites when people double <= 1.05", pair)]
    assert (value, met) == ("x1.0995", False)  # 2,210 / 2,010 bytes
    assert rows[("gwas_linear: worker -> gateway <= the answer", label)][1] is True


def test_size_names_and_options():
    assert [s.label for s in fb.parse_sizes("2000,10000,3x20x50")] == [
        "5 x 2,000 x 100,000",
        "5 x 10,000 x 200,000",
        "3 x 20 x 50",
    ]
    assert fb.parse_no_ref(["hail/gwas_logistic=too slow here"]) == {
        ("hail", "gwas_logistic"): "too slow here"
    }
    with pytest.raises(Exception, match="REFERENCE/TASK=REASON"):
        fb.parse_no_ref(["hail/gwas_logistic"])
    args = fb.arguments(["--sizes", "4000", "--no-ref", "plink2/gwas_linear=because"])
    assert args.sizes == [fb.SIZES["4000"]]
    assert fb.arguments(["--quick"]).sizes == [fb.QUICK]
    assert fb.arguments(fb.pass_on(args) + ["--size", "5x4000x100000"]).no_ref == args.no_ref


# ---------------------------------------------------------------------------
# the stub hub, as the gateway asks it


def gateway_for(site: str, hub: sites.StubHub, token: str | None = None) -> gw.Gateway:
    config = gw.GatewayConfig(
        site=site,
        data_root=sites.REPO / "nowhere",
        hub_api_url=hub.api_url,
        token=token or sites.StubHub.gateway_token(site),
        audit_url=hub.audit_url,
        scheduler=None,
        allowed_tasks=("*",),
    )
    return gw.Gateway(config, DisclosureRules(), gw.clock_from_env({}))


def test_the_stub_hub_answers_the_gateway_as_the_hub_and_audit_service_do():
    datasets = {"nig": "JGAD000101", "ncc": "JGAD000201"}

    async def ask(hub):
        nig = gateway_for("nig", hub)
        caller = await nig.caller(sites.USER_TOKEN)
        assert (caller.name, caller.kind) == (sites.USER, "user")
        with pytest.raises(gw.GatewayRefusal) as refused:
            await nig.caller("someone-else's-token")
        assert refused.value.status_code == 403
        [approval] = await nig.approval_for(sites.USER, "JGAD000101")
        assert approval["approval_id"] == sites.APPROVAL
        assert approval["query_audit_reset"] is None
        # told only about its own site's dataset
        with pytest.raises(gw.GatewayRefusal):
            await nig.approval_for(sites.USER, "JGAD000201")
        ncc = gateway_for("ncc", hub)
        assert [a["datasets"] for a in await ncc.approvals(sites.USER)] == [["JGAD000201"]]
        assert await ncc.approvals("another-person") == []
        # a token that is no gateway's is refused by the audit service
        with pytest.raises(gw.GatewayRefusal):
            await gateway_for("nig", hub, token="not-a-gateway").approvals(sites.USER)
        await nig.record(user=sites.USER, task="allele_frequencies", outcome="answered")

    with sites.StubHub(datasets) as hub:
        run_async(ask(hub))
        assert [e["data"]["outcome"] for e in hub.events] == ["answered"]


# ---------------------------------------------------------------------------
# the worker's byte counter


class FakeComm:
    def __init__(self):
        self.written = []

    async def write(self, msg, serializers=None, on_error="message"):
        self.written.append(msg)
        return 1000 if "data" in msg else 2


class FakeWorker:
    def __init__(self):
        task = type("TaskState", (), {"nbytes": 800})()
        self.state = type("State", (), {"tasks": {"x": task}})()

        async def get_data(comm, keys, who=None, serializers=None):
            await comm.write({"status": "OK", "data": {k: 1 for k in keys}})
            return "dont_reply"

        self.handlers = {"get_data": get_data}


def test_the_worker_counts_the_bytes_of_the_results_it_sends(tmp_path, monkeypatch):
    path = tmp_path / "worker-1-bytes.json"
    monkeypatch.setenv(worker_bytes.ENV, str(path))
    worker = FakeWorker()
    worker_bytes.dask_setup(worker)
    assert json.loads(path.read_text())["get_data_bytes"] == 0
    comm = FakeComm()
    for _ in range(2):
        assert asyncio.run(worker.handlers["get_data"](comm, keys=["x"])) == "dont_reply"
    counts = json.loads(path.read_text())
    assert counts["get_data_bytes"] == 2000
    assert (counts["get_data_calls"], counts["get_data_keys"], counts["result_nbytes"]) == (
        2,
        2,
        1600,
    )
    assert "write" not in vars(comm)  # the comm's own method again


# ---------------------------------------------------------------------------
# timing rounds at the client


def test_figures_sum_sites_and_take_the_slowest_site_of_each_round():
    answers = [
        sites.Answer("nig", 1, 1.0, 100, 10),
        sites.Answer("ncc", 1, 3.0, 120, 10),
        sites.Answer("nig", 2, 2.0, 50, 20),
        sites.Answer("ncc", 2, 0.5, 60, 20),
    ]
    before = {"nig": {"get_data_bytes": 5}, "ncc": {}}
    after = {"nig": {"get_data_bytes": 105, "get_data_calls": 1}, "ncc": {}}
    f = sites.figures(answers, wall=7.0, before=before, after=after)
    assert f["site_s"] == {"nig": 3.0, "ncc": 3.5}
    assert f["combine_s"] == pytest.approx(0.5)
    assert f["federated_s"] == pytest.approx(7.0)
    assert f["slowest_site_plus_combine_s"] == pytest.approx(3.0 + 2.0 + 0.5)
    assert f["site_bytes"] == {"nig": 150, "ncc": 180}
    assert f["worker_bytes"]["nig"]["get_data_bytes"] == 100
    assert f["rounds"] == 2


def test_a_worker_plan_runs_on_loopback_with_the_preload(tmp_path):
    from hub.sites.containers import worker_plans

    [plan] = worker_plans(sites.demo_platform().sites["nig"])
    cmd = sites.worker_command(plan, "tcp://127.0.0.1:4321", tmp_path)
    assert cmd[1:3] == ["worker", "tcp://127.0.0.1:4321"]
    options = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert options["--host"] == "127.0.0.1"
    assert options["--local-directory"] == str(tmp_path)
    assert options["--nthreads"] == "1"
    assert options["--preload"] == str(sites.PRELOAD)
    assert plan.environment["OPENBLAS_NUM_THREADS"] == "1"


# ---------------------------------------------------------------------------
# the workload's writers


def test_bed_rows_encode_alt_counts_as_plink_reads_them():
    dosage = np.array([[0, 1, 2, 3, 0], [2, 2, 2, 2, 2]], dtype=np.int64)
    rows = data.bed_rows(dosage)
    # 5 people: two bytes a variant; 0 ALT -> 0b11, 1 -> 0b10, 2 -> 0b00, missing -> 0b01,
    # four people a byte from the low bits, the last byte padded
    assert rows == bytes([0b01_00_10_11, 0b01_01_01_11, 0b00_00_00_00, 0b01_01_01_00])
    assert data.calls_of(dosage)[0].tolist() == [[0, 0], [0, 1], [1, 1], [-1, -1], [0, 0]]


def test_the_direct_writer_gives_what_synth_and_ingest_give(tmp_path, monkeypatch):
    import xarray as xr

    from hub.data.synth import generate_cohorts

    specs = data.site_specs()[:2]
    monkeypatch.setattr(data, "site_specs", lambda: specs)
    sizes = data.Sizes(2, 12, 30)
    people = data.write_calls(sizes, specs, tmp_path / "direct", lambda _m: None)
    generate_cohorts(
        tmp_path / "synth", specs, samples_per_site=12, variants=30, seed=data.SEED,
        raw_files=False, matrix_table=False,
    )  # fmt: skip
    for spec in specs:
        mine = tmp_path / "direct" / "sites" / spec.site_id / spec.analysis_dataset
        theirs = tmp_path / "synth" / spec.site_id / spec.analysis_dataset
        a = xr.open_zarr(mine / "genotypes.vcf.zarr", consolidated=False)
        b = xr.open_zarr(theirs / "genotypes.vcf.zarr", consolidated=False)
        for name in ("call_genotype", "sample_id", "variant_position", "variant_allele"):
            assert np.array_equal(a[name].values, b[name].values), name
        assert a["call_genotype"].data.chunksize == b["call_genotype"].data.chunksize
        for table in ("clinical.tsv", "phenotypes.tsv"):
            assert (mine / table).read_bytes() == (theirs / table).read_bytes()
        with gzip.open(mine / "genotypes.vcf.gz") as a, gzip.open(theirs / "genotypes.vcf.gz") as b:
            assert a.read() == b.read()
        assert (mine / "genotypes.vcf.gz.tbi").exists()
    pooled = xr.open_zarr(tmp_path / "direct" / "pooled" / "pooled.vcf.zarr", consolidated=False)
    assert pooled.sizes["samples"] == 24 == len(people)
    assert list(people["site"].unique()) == [s.site_id for s in specs]


def test_a_task_the_sites_refused_is_reported_not_timed(capsys):
    failed = size_result(2000)
    failed["tasks"]["gwas_logistic"] = {"error": "FederationError: site nig refused (413)"}
    doc = fb.json_document([failed], [GEN], started=0.0)
    logistic = doc["sizes"][0]["tasks"]["gwas_logistic"]
    assert logistic["federated_s"] is None
    assert logistic["error"].endswith("refused (413)")
    assert not any(name.startswith("gwas_logistic") for name, *_ in fb.targets([failed]))
    fb.print_times(failed, GEN)
    fb.print_bytes([failed])
    out = capsys.readouterr().out
    assert "| gwas_logistic | failed (below) |" in out
    assert "federated gwas_logistic failed: FederationError" in out


def test_a_run_stopped_half_way_keeps_what_it_measured(tmp_path, capsys):
    dest = tmp_path / "size.json"
    progress = fb.Progress(data.Sizes(5, 2000, 100_000), dest)
    progress.save()
    stopped = json.loads(dest.read_text())
    assert stopped["complete"] is False
    assert stopped["not_run"]["hail"]["gwas_linear"] == fb.Progress.NOT_REACHED
    progress.reference("plink2", "gwas_linear", 12.5, answer="kept for exactness")
    progress.reference("hail", "gwas_logistic", reason="did not finish within 7200 s")
    stopped = json.loads(dest.read_text())
    assert stopped["references"]["plink2"] == {"gwas_linear": 12.5}
    assert "gwas_linear" not in stopped["not_run"]["plink2"]
    assert stopped["not_run"]["hail"]["gwas_logistic"] == "did not finish within 7200 s"
    assert progress.answers["plink2"]["gwas_linear"] == "kept for exactness"
    # stopped before any federated figure: the tables still print, every task "not reached"
    doc = fb.json_document([stopped], [GEN], started=0.0)
    assert doc["sizes"][0]["complete"] is False
    assert doc["sizes"][0]["tasks"]["gwas_linear"]["federated_s"] is None
    fb.print_times(stopped, GEN)
    fb.print_memory([stopped])
    fb.print_targets([stopped])
    assert "stopped before its end" in capsys.readouterr().out


def test_a_short_measurement_runs_five_times_and_the_fastest_counts(monkeypatch):
    from bench import federation as fb

    assert fb.runs_for(0.2, 1) == fb.SHORT_RUNS and fb.runs_for(0.2, 7) == 7
    assert fb.runs_for(40.0, 1) == 1 and fb.runs_for(40.0, 2) == 2
    clock = iter([0.0, 0.5, 1.0, 1.2, 2.0, 2.3, 3.0, 3.4, 4.0, 4.6])  # runs of .5 .2 .3 .4 .6
    monkeypatch.setattr(fb.time, "perf_counter", lambda: next(clock))
    calls = []
    best, value = fb.timed(lambda: calls.append(1) or len(calls), 1)
    assert len(calls) == 5 and value == 5 and abs(best - 0.2) < 1e-9
