"""bench/export.py in its quick form: the script runs the site's real module, the export
service's handlers and the admin service's review pages on small sizes in seconds, and
prints the table of ratios (two freeze rows with MB/s and the module's peak memory, two
queue rows, two review page rows) and the JSON document with the same rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import export as bx

REPO = Path(__file__).resolve().parents[3]


def test_the_quick_run_prints_the_table_of_ratios(tmp_path):
    out = tmp_path / "export.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "export.py"),
            "--quick",
            "--json",
            str(out),
            "--tmp",
            str(tmp_path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("|")]
    assert lines[0].startswith("| part | workload | airlock s | reference s | ratio")
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [r[0] for r in body] == ["freeze", "freeze", "queue", "queue", "review", "review"]
    assert all(len(r) == 8 and r[4].endswith("x") and float(r[4][:-1]) > 0 for r in body)
    assert all(float(r[5]) > 0 and float(r[6]) > 0 and float(r[7]) > 0 for r in body[:2])
    assert "cp + sha256sum" in body[0][1] and "bare SQL select" in body[2][1]
    assert body[4][1].startswith("review page: the queue (10 open)")
    assert body[5][1].startswith("review page: one request (2 tables shown) + its PNG")
    doc = json.loads(out.read_text())
    assert doc["sizes"]["requests"] == 10 and len(doc["rows"]) == 6
    freeze = [r for r in doc["rows"] if r["part"] == "freeze"]
    assert [r["files"] for r in freeze] == [3, 1] and all(r["checks_ok"] for r in freeze)
    # the module's own peak (its VmHWM), not this test's memory that a child's getrusage
    # maximum starts from
    assert all(10 < r["site_peak_mb"] < 200 for r in freeze), freeze
    assert all(r["ratio"] == r["airlock_s"] / r["reference_s"] for r in doc["rows"])
    assert list(tmp_path.iterdir()) == [out]  # the temporary folders are gone


def test_the_workload_files_are_what_they_say(tmp_path):
    bx.counts_csv(tmp_path / "c.csv", 50_000, 0)
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows[0].endswith(",cases,controls,n")
    assert min(int(r.rsplit(",", 3)[1]) for r in rows[1:]) >= 20
    bx.png_file(tmp_path / "f.png", 200_000, 0)
    files = bx.frozen_files(7)
    assert list(files) == ["results/table7.csv", "results/fig7.png", "results/counts7.tsv"]
    assert files["results/table7.csv"].decode().splitlines()[1].startswith("s421,")
    assert all(len(v.decode().splitlines()) == 61 for k, v in files.items() if "png" not in k)
    data = (tmp_path / "f.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and abs(len(data) - 200_000) < 5_000
    bx.sumstats_csv(tmp_path / "s.csv", 1_000_000)
    text = (tmp_path / "s.csv").read_text()
    assert text.startswith("chrom,pos,rsid,") and text.endswith("\n")
    assert 900_000 < len(text) <= 1_000_100
