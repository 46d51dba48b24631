"""contrib/lnav/pkspy_jsonl.json: lnav reads every line of real JSON lines exports,
with its time and level (skipped where lnav is not installed)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, expected, pkspy

LNAV = shutil.which("lnav")
FORMAT = ROOT / "contrib" / "lnav" / "pkspy_jsonl.json"
PYKCS11 = ROOT / "fixtures" / "pkcs11-spy" / "softhsm2-pykcs11.log"
LINK = ROOT / "fixtures" / "link"

pytestmark = pytest.mark.skipif(LNAV is None, reason="lnav is not installed")


def _lnav(home: Path, *args: str) -> str:
    r = subprocess.run([LNAV, *args], capture_output=True, text=True, timeout=120,
                       env={"HOME": str(home), "PATH": "/usr/bin:/bin", "TERM": "dumb"})
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    _lnav(home, "-i", str(FORMAT))
    assert list(home.glob(".lnav/formats/installed/pkspy_jsonl.json"))
    return home


def _export(tmp: Path, *traces: Path) -> tuple[Path, list[dict]]:
    r = pkspy("export", "-f", "jsonl", *map(str, traces))
    assert r.returncode == 0, r.stderr
    out = tmp / "trace.jsonl"
    out.write_bytes(r.stdout)
    return out, [json.loads(line) for line in r.stdout.decode().splitlines()]


def _rows(home: Path, jsonl: Path) -> list[dict]:
    text = _lnav(home, "-n", "-c", ";SELECT source, line, log_level, log_time FROM pkspy_jsonl",
                 "-c", ":write-csv-to -", str(jsonl))
    return list(csv.DictReader(io.StringIO(text)))


def _check_every_line(home: Path, jsonl: Path, records: list[dict]) -> list[dict]:
    rows = _rows(home, jsonl)
    assert len(rows) == len(records)  # every line is a pkspy_jsonl message
    for row, rec in zip(rows, records, strict=True):
        assert (row["source"], int(row["line"])) == (rec["source"], rec["line"])
        assert row["log_level"] == rec["level"]
        assert row["log_time"] == rec["timestamp"].replace("T", " ")
    return rows


def test_lnav_reads_a_spy_export_with_the_failed_calls_as_errors(home, tmp_path) -> None:
    jsonl, records = _export(tmp_path, PYKCS11)
    rows = _check_every_line(home, jsonl, records)
    errors = [rec["function"] for row, rec in zip(rows, records, strict=True)
              if row["log_level"] == "error" and rec["kind"] == "call"]
    assert sorted(errors) == sorted(f["function"] for f in
                                    expected(PYKCS11)["failed_calls_expected"])


def test_lnav_reads_a_merged_spy_and_dateless_debug_export(home, tmp_path) -> None:
    """OpenSC's debug log has no dates: the export dates them, and lnav keeps the
    spy's and the debug log's lines in one time order."""
    jsonl, records = _export(tmp_path, LINK / "spy.log", LINK / "debug.log")
    rows = _check_every_line(home, jsonl, records)
    assert {r["source"] for r in rows} == {str(LINK / "spy.log"), str(LINK / "debug.log")}
    times = [r["log_time"] for r in rows]
    assert times == sorted(times)
    # the card answered every probe with an error status word: lnav shows each as one
    apdu_errors = sum(row["log_level"] == "error" and rec["kind"] == "apdu"
                      for row, rec in zip(rows, records, strict=True))
    assert apdu_errors == expected(LINK / "spy.log")["apdus"]
