"""The egress gate's logic without a server: decisions, notices, kernel framing in both protocols.

The claim that the gate blocks is proven through the real proxy against a
server in its site container (tests/integration/test_egress_*.py); these are
the fast tests of the logic it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from extensions.guard.gate import launch
from extensions.guard.gate.frames import (
    V1_PROTOCOL,
    channel_of,
    pack_kernel_frame,
    parse_kernel_frame,
)
from extensions.guard.gate.judge import Gate
from extensions.guard.gate.policy import (
    CAPPED,
    judge_download,
    judge_output,
    redact_notebook,
    strings_of,
    withheld_content,
)


@dataclass(frozen=True)
class V:
    """A recogniser's verdict, as much of it as the policy reads."""

    kind: str | None = None
    people: frozenset = frozenset()
    records: int = 0
    opaque: bool = False

    def describe_en(self):
        return f"kind {self.kind}"

    def describe_ja(self):
        return f"種類 {self.kind}"


def people(n):
    return frozenset(i.to_bytes(8, "big") for i in range(n))


# -- decisions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "withheld", "reason"),
    [
        (V(), False, ""),
        (V(opaque=True), False, ""),  # the meter bounds what no recogniser sees
        (V(people=people(1)), True, "people"),
        (V("people-table", people(3), 3), True, "people"),
        (V("clinical-rows", frozenset(), 40), True, "per-person-rows"),
        (V("genotype-matrix"), True, "genotype-matrix"),
        (V("vcf", frozenset(), 3), True, "raw-records"),
        (V("bam"), True, "raw-records"),
    ],
)
def test_a_download_naming_anyone_or_holding_records_is_refused(verdict, withheld, reason):
    d = judge_download(verdict)
    assert d.withhold is withheld
    assert d.reason == reason
    if withheld:
        assert "持ち出し制御" in d.notice_ja and "egress gate" in d.notice_en


@pytest.mark.parametrize(
    ("verdict", "withheld", "reason"),
    [
        (V(), False, ""),
        (V("people-table", people(5), 5), False, ""),  # df.head()
        (V("people-table", people(10), 10), False, ""),  # a long frame as pandas shows it
        (V("people-table", people(11), 11), True, "people"),
        (V("clinical-rows", frozenset(), 10), False, ""),
        (V("clinical-rows", frozenset(), 11), True, "per-person-rows"),
        (V("vcf", frozenset(), 3), True, "raw-records"),
        (V("genotype-matrix"), True, "genotype-matrix"),
    ],
)
def test_an_output_may_show_a_few_people_never_records(verdict, withheld, reason):
    d = judge_output(verdict, max_people=10)
    assert (d.withhold, d.reason) == (withheld, reason)


def test_the_cap_notice_says_why_in_both_languages():
    assert "上限" in CAPPED.notice_ja and "limit" in CAPPED.notice_en
    assert CAPPED.notice == f"{CAPPED.notice_ja}\n{CAPPED.notice_en}"


# -- what of a message is read, and what replaces it -----------------------------------


def test_every_string_of_a_message_is_read_keys_too():
    content = {"data": {"state": {"NIG-000001": [1, "NIG-000002"], "n": 3}}, "x": ["a", {"b": "c"}]}
    assert set(strings_of(content)) >= {"NIG-000001", "NIG-000002", "a", "b", "c"}


D = judge_output(V("vcf", frozenset(), 5), 10)


@pytest.mark.parametrize(
    ("msg_type", "content", "kept"),
    [
        ("stream", {"name": "stderr", "text": "NIG-1\tchr1"}, {"name": "stderr"}),
        (
            "execute_result",
            {"data": {"text/plain": "x"}, "execution_count": 4},
            {"execution_count": 4},
        ),
        (
            "display_data",
            {"data": {"text/html": "<table>"}, "transient": {"display_id": "d"}},
            {"transient": {"display_id": "d"}},
        ),
        (
            "update_display_data",
            {"data": {"text/plain": "x"}, "transient": {"display_id": "d"}},
            {"transient": {"display_id": "d"}},
        ),
        (
            "error",
            {"ename": "ValueError", "evalue": "rows", "traceback": ["rows"]},
            {"ename": "ValueError"},
        ),
        (
            "inspect_reply",
            {"status": "ok", "found": True, "data": {"text/plain": "rows"}},
            {"status": "ok"},
        ),
        (
            "complete_reply",
            {"status": "ok", "matches": ["NIG-1"], "cursor_start": 3, "cursor_end": 5},
            {"cursor_start": 3, "matches": []},
        ),
        ("history_reply", {"status": "ok", "history": [[0, 1, "print(rows)"]]}, {"history": []}),
        ("input_request", {"prompt": "rows", "password": False}, {"password": False}),
        (
            "comm_msg",
            {
                "comm_id": "c1",
                "data": {"method": "update", "state": {"value": "rows"}, "buffer_paths": [["x"]]},
            },
            {"comm_id": "c1"},
        ),
        ("debug_event", {"event": "output", "body": {"output": "rows"}}, {}),
    ],
)
def test_a_withheld_message_keeps_its_structure_and_loses_its_data(msg_type, content, kept):
    out = withheld_content(msg_type, content, D)
    for k, v in kept.items():
        assert out[k] == v
    text = json.dumps(out, ensure_ascii=False)
    assert "rows" not in text and "NIG-1" not in text
    if msg_type not in ("complete_reply", "history_reply"):  # those just come back empty
        assert "Withheld by the egress gate" in text and "持ち出し制御" in text


def test_a_notebook_shown_in_jupyterlab_loses_only_the_outputs_over_the_limit():
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "source": "df.head()",
                "outputs": [{"output_type": "stream", "text": "few"}],
            },
            {
                "cell_type": "code",
                "source": "df",
                "outputs": [{"output_type": "stream", "text": "many"}],
            },
            {"cell_type": "markdown", "source": "text"},
        ]
    }

    def judge(text):
        v = V("people-table", people(5 if "few" in text else 50))
        return judge_output(v, 10), v

    out, withheld, shown = redact_notebook(nb, judge)
    assert [d.reason for d in withheld] == ["people"]
    assert out["cells"][0]["outputs"][0]["text"] == "few"
    assert "Withheld" in out["cells"][1]["outputs"][0]["data"]["text/plain"]
    assert len(shown) == 5
    assert nb["cells"][1]["outputs"][0]["text"] == "many"  # the stored notebook is untouched


# -- kernel websocket framing -----------------------------------------------------------


def _msg(msg_type="stream", content=None, buffers=()):
    return {
        "header": {
            "msg_id": "m1",
            "msg_type": msg_type,
            "session": "s",
            "username": "u",
            "version": "5.3",
            "date": "2026-12-07T00:00:00Z",
        },
        "parent_header": {"msg_id": "p1"},
        "metadata": {},
        "content": content or {"name": "stdout", "text": "hello"},
        "buffers": list(buffers),
        "channel": "iopub",
    }


def test_v1_frames_round_trip_and_a_replaced_content_is_packed_back():
    msg = _msg(buffers=[b"\x00\x01buffer"])
    parts = [
        json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")
    ]
    frame = serialize_msg_to_ws_v1([*parts, *msg["buffers"]], "iopub")
    f = parse_kernel_frame(frame, V1_PROTOCOL)
    assert (f.channel, f.msg_type, f.content["text"], f.buffers) == (
        "iopub",
        "stream",
        "hello",
        [b"\x00\x01buffer"],
    )
    assert pack_kernel_frame(f) == serialize_msg_to_ws_v1(
        [*parts[:3], json.dumps(f.content, separators=(",", ":")).encode(), b"\x00\x01buffer"],
        "iopub",
    )
    f.content = {"name": "stdout", "text": "replaced"}
    f.buffers = []
    g = parse_kernel_frame(pack_kernel_frame(f), V1_PROTOCOL)
    assert g.content["text"] == "replaced" and g.buffers == [] and g.header == msg["header"]


def test_legacy_text_and_binary_frames_round_trip():
    msg = _msg()
    text = json.dumps({k: v for k, v in msg.items() if k != "buffers"})
    f = parse_kernel_frame(text, None)
    assert f.text and f.content["text"] == "hello"
    assert json.loads(pack_kernel_frame(f))["content"]["text"] == "hello"
    binary = serialize_binary_message(_msg(buffers=[b"abc"]))
    g = parse_kernel_frame(binary, None)
    assert g.buffers == [b"abc"] and not g.text
    back = deserialize_binary_message(pack_kernel_frame(g))
    assert back["content"]["text"] == "hello" and back["buffers"] == [b"abc"]


def test_a_text_frame_on_the_v1_protocol_is_not_read():
    with pytest.raises(ValueError):
        parse_kernel_frame("{}", V1_PROTOCOL)


@pytest.mark.parametrize(
    ("msg_type", "channel"),
    [
        ("stream", "kernel"),
        ("comm_msg", "widget"),
        ("comm_open", "widget"),
        ("inspect_reply", "reply"),
        ("debug_event", "reply"),
    ],
)
def test_channels_of_message_types(msg_type, channel):
    assert channel_of(msg_type) == channel


def test_routes_are_read_under_the_servers_prefix():
    g = Gate(prefix="/user/tanaka/nig/", recogniser=None, rules=None, meter=None, events=None)
    assert g.route_of("/user/tanaka/nig/files/a.csv") == "files/a.csv"
    assert g.route_of("/elsewhere/x") == "elsewhere/x"


# -- the launcher ------------------------------------------------------------------------


def test_the_server_listens_behind_the_gate_on_loopback():
    assert (
        launch.behind("http://0.0.0.0:80/user/tanaka/nig/")
        == "http://127.0.0.1:8888/user/tanaka/nig/"
    )
    assert launch.split_service_url("http://0.0.0.0:80/user/t/nig/") == (
        "0.0.0.0",
        80,
        "/user/t/nig/",
    )
    with pytest.raises(SystemExit, match="JUPYTERHUB_SERVICE_URL"):
        launch.split_service_url("unix:/tmp/x")


def test_the_gate_keeps_only_its_own_environment():
    env = launch.gate_env(
        {
            "VISITING_SITE": "nig",
            "JUPYTERHUB_API_TOKEN": "t",
            "PATH": "/bin",
            "SECRET": "x",
            "LD_PRELOAD": "/x.so",
        }
    )
    assert env["VISITING_SITE"] == "nig" and env["JUPYTERHUB_API_TOKEN"] == "t"
    assert "SECRET" not in env and "LD_PRELOAD" not in env
    assert env["HOME"] == "/var/lib/visiting-gate"


def test_the_launcher_refuses_to_run_as_anyone_but_root(monkeypatch, capsys):
    monkeypatch.setattr(launch.os, "getuid", lambda: 1000)
    assert launch.main([]) == 2
    assert "root" in capsys.readouterr().err


def test_a_plot_is_judged_as_its_bytes_and_text_dressed_as_a_plot_as_text():
    import base64

    from extensions.guard.gate.judge import split_media

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    content = {
        "data": {"image/png": base64.b64encode(png).decode() + "\n", "text/plain": "<Figure>"}
    }
    rest, media = split_media(content)
    assert media == [png] and rest["data"] == {"text/plain": "<Figure>"}
    table = "NIG-000001\tfemale\nNIG-000002\tmale\n"
    rest, media = split_media({"data": {"image/png": table}})
    assert media == [] and rest["data"]["image/png"] == table  # not base64: read as text
    assert split_media({"text": "x"}) == ({"text": "x"}, [])
