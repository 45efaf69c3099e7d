"""The home quota the guard keeps on saves through Jupyter's contents API.

Rule checked: "Quota" (a researcher's home holds no more than the site admins
set for the approval, VISITING_HOME_QUOTA): a save, an upload chunk or a copy
that would take the home over it is refused with a message in Japanese and
English; saves that do not grow the home pass. Docker volumes cannot be
size-limited, so this is the guard's share; writes from kernels and terminals
do not pass here (they are counted at the next measure of the home).

The cache is tested by moving a fake clock, and the manager is the real
GuardedContentsManager over a real folder, with the guard app stubbed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from types import SimpleNamespace

import nbformat
import pytest
from tornado import web

from extensions.guard.context import ServerContext, home_quota_from_text
from extensions.guard.managers import (
    GuardedContentsManager,
    HomeQuotaCheck,
    HomeQuotaExceeded,
    HomeUsage,
    home_bytes,
    home_quota_message,
    human_bytes,
    incoming_bytes,
)
from tests.aio import run as run_async

KIB = 1024
MIB = 1024**2
GIB = 1024**3


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class CountingMeasure:
    """home_bytes, counting its walks."""

    def __init__(self):
        self.walks = 0

    def __call__(self, root) -> int:
        self.walks += 1
        return home_bytes(root)


# ---------------------------------------------------------------------------
# the quota from the spawner's environment


@pytest.mark.parametrize(
    "text,quota",
    [(None, None), ("", None), ("  ", None), ("1073741824", GIB), (" 5000\n", 5000)],
    ids=["unset", "empty", "blank", "one-gib", "spaces-around"],
)
def test_quota_is_read_from_the_environment(text, quota):
    env = {} if text is None else {"VISITING_HOME_QUOTA": text}
    assert ServerContext.from_env(env).home_quota == quota


@pytest.mark.parametrize(
    "text",
    ["10G", "1.5", "-5", "0", "1e9", "0x10", "1_000"],
    ids=["unit", "fraction", "negative", "zero", "exponent", "hex", "underscore"],
)
def test_an_invalid_quota_is_refused_naming_the_variable(text):
    with pytest.raises(ValueError, match="VISITING_HOME_QUOTA") as e:
        ServerContext.from_env({"VISITING_HOME_QUOTA": text})
    assert repr(text) in str(e.value)
    with pytest.raises(ValueError, match="VISITING_HOME_QUOTA"):
        home_quota_from_text(text)


def test_the_quota_survives_a_new_context_from_the_hub():
    from dataclasses import replace

    ctx = ServerContext.from_env({"VISITING_HOME_QUOTA": "1000"})
    assert replace(ctx, halted="revoked").home_quota == 1000


# ---------------------------------------------------------------------------
# measuring the home


def test_home_bytes_counts_regular_files_only_once_and_follows_no_link(tmp_path):
    home = tmp_path / "home"
    outside = tmp_path / "outside"
    (home / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir()
    (home / "a.txt").write_bytes(b"x" * 100)
    (home / "sub" / "b.bin").write_bytes(b"y" * 1000)
    (home / "sub" / "deeper" / ".hidden").write_bytes(b"z" * 10)
    (home / "empty").mkdir()
    os.link(home / "sub" / "b.bin", home / "hardlink.bin")  # the same bytes: once
    (outside / "big.dat").write_bytes(b"0" * 50_000)
    (home / "data").symlink_to(outside, target_is_directory=True)
    (home / "big-link.dat").symlink_to(outside / "big.dat")
    (home / "dangling").symlink_to(tmp_path / "nowhere")
    assert home_bytes(home) == 1110
    assert home_bytes(tmp_path / "nowhere") == 0


# ---------------------------------------------------------------------------
# the cache, with a fake clock


def make_usage(root, clock):
    measure = CountingMeasure()
    return HomeUsage(root, max_age=10, now=clock, measure=measure), measure


def test_a_measure_is_trusted_for_its_age_and_kept_up_to_date(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 500)
    clock = FakeClock()
    usage, measure = make_usage(tmp_path, clock)
    assert usage.cached() is None
    assert run_async(usage.used()) == 500
    assert measure.walks == 1
    usage.add(300)  # the guard saved 300 bytes
    clock.t += 9.9
    assert run_async(usage.used()) == 800
    assert measure.walks == 1  # no walk within the age
    usage.add(-1000)
    assert usage.cached() == 0  # never below nothing
    clock.t += 0.2
    assert usage.cached() is None
    assert run_async(usage.used()) == 500  # measured again: what is on disk
    assert measure.walks == 2


def test_a_younger_measure_can_be_asked_for(tmp_path):
    clock = FakeClock()
    usage, measure = make_usage(tmp_path, clock)
    run_async(usage.used())
    clock.t += 2
    assert usage.cached() == 0
    assert usage.cached(max_age=1) is None
    (tmp_path / "written-in-a-terminal").write_bytes(b"t" * 42)
    assert run_async(usage.used(1)) == 42
    assert measure.walks == 2


def test_forget_measures_again_and_add_before_a_measure_does_nothing(tmp_path):
    clock = FakeClock()
    usage, measure = make_usage(tmp_path, clock)
    usage.add(10_000)
    assert usage.cached() is None
    (tmp_path / "f").write_bytes(b"x" * 7)
    assert run_async(usage.used()) == 7
    usage.forget()
    assert usage.cached() is None
    assert run_async(usage.used()) == 7
    assert measure.walks == 2


def test_saves_at_once_wait_for_one_walk(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 3)
    usage, measure = make_usage(tmp_path, FakeClock())

    async def many():
        return await asyncio.gather(*(usage.used() for _ in range(20)))

    assert run_async(many()) == [3] * 20
    assert measure.walks == 1


# ---------------------------------------------------------------------------
# the decision


# (id, quota, used, replaced, incoming, fits)
CHECKS = [
    ("new-file-fits", 1000, 500, 0, 500, True),
    ("new-file-one-byte-over", 1000, 500, 0, 501, False),
    ("replacing-frees-room", 1000, 900, 400, 500, True),
    ("replacing-with-more-than-fits", 1000, 900, 100, 201, False),
    ("shrinking-while-over-quota", 1000, 1500, 400, 100, True),
    ("same-size-while-over-quota", 1000, 1500, 400, 400, True),
    ("growing-while-over-quota", 1000, 1500, 400, 401, False),
    ("append-chunk-fits", 1000, 999, 0, 1, True),
    ("append-chunk-over", 1000, 1000, 0, 1, False),
    ("empty-file-at-quota", 1000, 1000, 0, 0, True),
]


@pytest.mark.parametrize(
    "quota,used,replaced,incoming,fits", [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS]
)
def test_a_save_fits_when_it_does_not_grow_the_home_past_the_quota(
    quota, used, replaced, incoming, fits
):
    check = HomeQuotaCheck(quota, used, replaced, incoming)
    assert check.after == used - replaced + incoming
    assert check.fits is fits


@pytest.mark.parametrize(
    "n,text",
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1536, "1.5 KiB"),
        (300 * MIB, "300 MiB"),
        (int(1.5 * GIB), "1.5 GiB"),
        (10 * GIB, "10 GiB"),
    ],
)
def test_sizes_read_as_people_read_them(n, text):
    assert human_bytes(n) == text


def test_the_message_is_japanese_first_then_english():
    msg = home_quota_message("results/big.csv", HomeQuotaCheck(10 * GIB, int(9.5 * GIB), 0, GIB))
    ja, en = msg.split("\n")
    assert "ホーム領域の容量上限 10 GiB" in ja and "現在の使用量 9.5 GiB" in ja
    assert "削除" in ja and "サイト管理者" in ja and "「results/big.csv」（1 GiB）" in ja
    assert "quota of 10 GiB" in en and "9.5 GiB in use" in en
    assert "Delete files" in en and "site admin" in en and "'results/big.csv' (1 GiB)" in en


# ---------------------------------------------------------------------------
# what a save writes


def _nb(text: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("\n".join([text] * 5)))
    nb.cells.append(nbformat.v4.new_markdown_cell("解析の結果\n- 一行目\n- 二行目"))
    return json.loads(json.dumps(nb))


@pytest.mark.parametrize(
    "raw",
    [b"", b"a", b"ab", b"abc", bytes(range(256)) * 41],
    ids=["empty", "two-pads", "one-pad", "no-pad", "binary"],
)
def test_base64_content_is_counted_as_the_bytes_it_decodes_to(raw):
    b64 = base64.b64encode(raw).decode()
    assert incoming_bytes({"type": "file", "format": "base64", "content": b64}) == len(raw)
    wrapped = base64.encodebytes(raw).decode()  # with newlines every 76 characters
    assert incoming_bytes({"type": "file", "format": "base64", "content": wrapped}) == len(raw)


def test_text_and_notebooks_are_counted_as_written(tmp_path):
    text = "ゲノム解析 results\n" * 10
    assert incoming_bytes({"type": "file", "format": "text", "content": text}) == len(text.encode())
    content = _nb("print('結果')")
    path = tmp_path / "a.ipynb"
    nbformat.write(nbformat.from_dict(content), str(path), version=nbformat.NO_CONVERT)
    assert incoming_bytes({"type": "notebook", "content": content}) == path.stat().st_size


@pytest.mark.parametrize(
    "model",
    [
        {"type": "directory"},
        {"type": "file", "content": "x"},  # no format: the server answers 400
        {"type": "file", "format": "text"},
        {"type": "notebook", "content": "not a notebook"},
    ],
    ids=["directory", "no-format", "no-content", "notebook-not-an-object"],
)
def test_models_the_server_does_not_write_are_not_counted(model):
    assert incoming_bytes(model) is None


# ---------------------------------------------------------------------------
# the real contents manager over a real folder


def make_manager(home, quota, clock=None):
    home.mkdir(exist_ok=True)
    measure = CountingMeasure()
    app = SimpleNamespace(
        context=SimpleNamespace(home_quota=quota),
        home_usage=HomeUsage(str(home), now=clock or FakeClock(), measure=measure),
        events=SimpleNamespace(emit=lambda *a, **k: None),
        downloads=SimpleNamespace(redact_notebook=lambda nb: []),
    )
    cm = GuardedContentsManager(root_dir=str(home))
    cm.guard_app = app
    return cm, app, measure


def text_model(n: int, **extra) -> dict:
    return {"type": "file", "format": "text", "content": "x" * n, **extra}


def b64_chunk(n: int, chunk: int) -> dict:
    content = base64.b64encode(b"\x00" * n).decode()
    return {"type": "file", "format": "base64", "content": content, "chunk": chunk}


def test_a_save_that_fits_passes_and_one_that_does_not_is_refused_unwritten(tmp_path):
    home = tmp_path / "home"
    clock = FakeClock()
    cm, app, measure = make_manager(home, quota=10 * KIB, clock=clock)
    (home / "old.csv").write_bytes(b"o" * 4 * KIB)

    async def run():
        await cm.save(text_model(4 * KIB), "fits.txt")
        clock.t += 2
        with pytest.raises(HomeQuotaExceeded) as e:
            await cm.save(text_model(3 * KIB), "over.txt")
        return e.value

    err = run_async(run())
    assert (home / "fits.txt").stat().st_size == 4 * KIB
    assert not (home / "over.txt").exists()
    assert isinstance(err, web.HTTPError) and err.status_code == 507
    ja, en = err.log_message.split("\n")
    assert "ホーム領域の容量上限 10 KiB" in ja and "現在の使用量 8 KiB" in ja
    assert "'over.txt' (3 KiB)" in en and "quota of 10 KiB" in en
    assert app.home_usage.cached() == 8 * KIB
    assert measure.walks == 2  # the first save's, and a younger one to refuse on


def test_replacing_a_file_counts_only_the_difference(tmp_path):
    home = tmp_path / "home"
    cm, app, _ = make_manager(home, quota=10 * KIB)
    (home / "table.csv").write_bytes(b"o" * 8 * KIB)

    async def run():
        await cm.save(text_model(9 * KIB), "table.csv")  # 8 go, 9 come: 9 of 10
        with pytest.raises(HomeQuotaExceeded):
            await cm.save(text_model(2 * KIB), "table-2.csv")
        await cm.save(text_model(1 * KIB), "table.csv")  # shrinks

    run_async(run())
    assert (home / "table.csv").stat().st_size == KIB
    assert app.home_usage.cached() == KIB


def test_saves_over_the_quota_that_shrink_the_home_pass(tmp_path):
    home = tmp_path / "home"
    cm, _, _ = make_manager(home, quota=10 * KIB)
    (home / "huge.log").write_bytes(b"h" * 20 * KIB)  # written by a kernel: over already

    async def run():
        await cm.save(text_model(5 * KIB), "huge.log")
        await cm.save({"type": "directory"}, "new-folder")
        with pytest.raises(HomeQuotaExceeded):
            await cm.save(text_model(6 * KIB), "again.log")

    run_async(run())
    assert (home / "huge.log").stat().st_size == 5 * KIB
    assert (home / "new-folder").is_dir()


def test_a_folder_can_be_made_however_full_the_home_is(tmp_path):
    home = tmp_path / "home"
    cm, _, _ = make_manager(home, quota=KIB)
    (home / "full").write_bytes(b"f" * 5 * KIB)
    run_async(cm.save({"type": "directory"}, "results"))
    assert (home / "results").is_dir()


def test_chunked_upload_counts_each_chunk_and_the_last(tmp_path):
    home = tmp_path / "home"
    clock = FakeClock()
    cm, app, measure = make_manager(home, quota=100 * KIB, clock=clock)
    (home / "upload.bin").write_bytes(b"p" * 60 * KIB)  # an earlier upload, replaced by chunk 1

    async def run():
        await cm.save(b64_chunk(30 * KIB, 1), "upload.bin")  # 60 go, 30 come
        for n in range(2, 4):
            await cm.save(b64_chunk(30 * KIB, n), "upload.bin")  # appends: 90
        with pytest.raises(HomeQuotaExceeded):
            await cm.save(b64_chunk(30 * KIB, -1), "upload.bin")  # the last chunk counts too
        await cm.save(b64_chunk(10 * KIB, -1), "upload.bin")  # 100: at the quota, fits

    run_async(run())
    assert (home / "upload.bin").stat().st_size == 100 * KIB
    assert app.home_usage.cached() == 100 * KIB
    assert measure.walks == 1  # none per chunk; the refusal's measure was young enough


def test_a_save_storm_walks_the_home_once_per_age(tmp_path):
    home = tmp_path / "home"
    clock = FakeClock()
    cm, app, measure = make_manager(home, quota=GIB, clock=clock)

    async def run():
        for i in range(50):
            await cm.save(text_model(100), f"autosave-{i % 5}.txt")
            clock.t += 0.1  # 5 s in all: within the age

    run_async(run())
    assert measure.walks == 1
    assert app.home_usage.cached() == 500
    clock.t += 10
    assert run_async(app.home_usage.used()) == 500
    assert measure.walks == 2


def test_a_notebook_save_and_a_copy_go_through_the_quota(tmp_path):
    home = tmp_path / "home"
    cm, _, _ = make_manager(home, quota=12 * KIB)
    content = _nb("x = 1  # " + "a" * 2000)  # about 10 KiB as written

    async def run():
        await cm.save({"type": "notebook", "content": content}, "analysis.ipynb")
        with pytest.raises(HomeQuotaExceeded):
            await cm.copy("analysis.ipynb")  # a file's copy is a save

    run_async(run())
    assert sorted(p.name for p in home.iterdir() if p.suffix == ".ipynb") == ["analysis.ipynb"]


def test_a_folder_copy_is_checked_before_it_is_made(tmp_path):
    home = tmp_path / "home"
    cm, app, _ = make_manager(home, quota=25 * KIB)
    (home / "run1").mkdir()
    (home / "run1" / "out.tsv").write_bytes(b"r" * 10 * KIB)

    async def run():
        await cm.copy("run1", "")  # 20 of 25
        assert app.home_usage.cached() is None  # measured again next time
        with pytest.raises(HomeQuotaExceeded):
            await cm.copy("run1", "")

    run_async(run())
    assert sorted(p.name for p in home.iterdir()) == ["run1", "run1-Copy1"]


def test_a_deletion_is_measured_at_once(tmp_path):
    home = tmp_path / "home"
    cm, app, _ = make_manager(home, quota=10 * KIB)
    cm.delete_to_trash = False  # JupyterLab's trash is in the home and would still count
    (home / "old.csv").write_bytes(b"o" * 8 * KIB)

    async def run():
        with pytest.raises(HomeQuotaExceeded):
            await cm.save(text_model(4 * KIB), "new.csv")
        await cm.delete_file("old.csv")
        await cm.save(text_model(4 * KIB), "new.csv")

    run_async(run())
    assert (home / "new.csv").exists()


def test_a_save_through_a_link_out_of_the_home_is_not_counted(tmp_path):
    home = tmp_path / "home"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cm, _, measure = make_manager(home, quota=KIB)
    (home / "scratch").symlink_to(scratch, target_is_directory=True)
    run_async(cm.save(text_model(4 * KIB), "scratch/big.txt"))
    assert (scratch / "big.txt").stat().st_size == 4 * KIB
    assert measure.walks == 0


def test_without_a_quota_nothing_is_measured(tmp_path):
    home = tmp_path / "home"
    cm, _, measure = make_manager(home, quota=None)
    run_async(cm.save(text_model(4 * KIB), "a.txt"))
    assert measure.walks == 0
