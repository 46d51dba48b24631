"""`pkspy export`: reports to attach to a bug report, redacted whatever the format."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from conftest import ROOT, fixture_secret_forms, pkspy

TRACES = sorted(p for d in ("pkcs11-spy", "opensc-debug", "pcsc-spy", "pcscd",
                                  "p11-kit", "pkcs11-logger")
                for p in (ROOT / "fixtures" / d).glob("*")
                if p.suffix in (".log", ".raw", ".txt"))


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_no_export_holds_a_secret(trace):
    forms = fixture_secret_forms(trace)
    for fmt in ("md", "text", "html", "jsonl"):
        r = pkspy("export", "-f", fmt, str(trace))
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert out.strip()
        assert not [f for f in forms if f in out], fmt


def test_markdown_of_a_failing_login_says_what_failed_first():
    trace = ROOT / "fixtures/pkcs11-spy/pkcs11-spy-0.24.0-softhsm2.log"
    md = pkspy("export", str(trace)).stdout.decode()
    head = md.split("## ")[:3]  # the title, what was traced, what failed
    assert "pkcs11-spy" in head[1] and "5 process(es)" in head[1] and "libsofthsm2.so" in head[1]
    first_failure = head[2].splitlines()[2]
    assert "C_Login → CKR_PIN_INCORRECT" in first_failure and "process 1, call #7" in first_failure
    assert "Wrong PIN" in head[2]
    assert "<details><summary>Decoded timeline" in md
    assert md.rstrip().endswith("user types and results are kept.")
    assert "secrets removed: 4 PIN." in md.splitlines()[-1]  # one per C_Login


def test_apdu_report_names_the_pin_commands_and_tries_left():
    trace = ROOT / "fixtures/opensc-debug/opensc-tool-d3.log"
    md = pkspy("export", str(trace)).stdout.decode()
    failed = md.split("## What failed")[1].split("## ")[0]
    assert failed.index("VERIFY") < failed.index("SELECT")  # PIN trouble before probing
    assert "63C2 2 tries left" in failed
    table = md.split("## PIN commands sent to the card")[1].split("## ")[0]
    assert "| VERIFY | 00 | 6 | 63C2 | 2 tries left |" in table


def test_html_is_one_self_contained_page():
    trace = ROOT / "fixtures/pkcs11-spy/softhsm2-pkcs11-tool.log"
    page = pkspy("export", "-f", "html", str(trace)).stdout.decode()

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.links = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.links += [v for k, v in attrs if k in ("src", "href")]

    parser = Tags()
    parser.feed(page)
    assert parser.tags[:2] == ["html", "head"] and "table" in parser.tags
    assert parser.links == []  # nothing to fetch from elsewhere


def test_jsonl_is_one_event_a_line_with_its_source(tmp_path):
    trace = ROOT / "fixtures/pcsc-spy/pyscard.raw"
    out = tmp_path / "events.jsonl"
    r = pkspy("export", "-f", "jsonl", "-o", str(out), str(trace))
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["kind"] for e in events} == {"pcsc", "apdu"}
    assert all(e["source"] == str(trace) and e["line"] >= 1 for e in events)
    assert len([e for e in events if e["kind"] == "apdu" and "response" in e]) == 27


def test_export_never_writes_over_an_input(tmp_path):
    trace = tmp_path / "t.log"
    trace.write_bytes((ROOT / "fixtures/pkcs11-spy/pkcs11-spy-0.27.1-softhsm2.log").read_bytes())
    r = pkspy("export", "-o", str(trace), str(trace))
    assert r.returncode == 2 and b"is an input" in r.stderr
