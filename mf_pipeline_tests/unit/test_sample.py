"""Tests of the synthetic Stooq-layout universe: format, determinism, truth and planted defects."""

from __future__ import annotations

import datetime
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.sample import (
    DEFECT_KINDS,
    DEFECT_SIDE_EFFECTS,
    HEADER,
    SampleReport,
    _ticker_pool,
    generate_universe,
)

RAW = Path("data/daily/us")
FILE_RE = re.compile(r"^(nasdaq stocks|nyse stocks)/([1-9][0-9]*)/([a-z]{1,5}\.us)\.txt$")

# The reason-code contract shared with the Bronze validator, pinned independently of the module.
CONTRACT = {
    "missing_header": ({"missing_header"}, "OK"),
    "blank_lines": ({"blank_lines"}, "OK"),
    "short_row": ({"too_few_columns:7"}, "OK"),
    "long_row": ({"too_many_columns:12"}, "OK"),
    "non_numeric": ({"parse_error"}, "OK"),
    "identical_duplicate": ({"duplicate_line"}, "OK"),
    "conflicting_duplicate": ({"duplicate_ticker_date"}, "OK"),
    "high_lt_low": ({"high_lt_low"}, "OK"),
    "zero_volume": ({"zero_volume"}, "OK"),
    "negative_price": ({"nonpositive_price"}, "OK"),
    "suspicious_spike": ({"suspicious_bar"}, "OK"),
    "long_gap": ({"gap_in_calendar"}, "OK"),
    "crlf_bom": ({"bom", "crlf"}, "OK"),
    "empty_file": ({"empty_file"}, "EMPTY"),
    "header_only": ({"header_only"}, "EMPTY"),
    "unsorted": ({"unsorted"}, "OK"),
    "non_daily_period": ({"bad_timeframe"}, "OK"),
    "invalid_ticker_name": ({"invalid_file_ticker"}, "FAILED"),
    "duplicate_source": ({"duplicate_source_ticker"}, "FAILED"),
}
FILE_LEVEL = {"missing_header", "blank_lines", "bom", "crlf", "empty_file", "header_only"}
FILE_LEVEL |= {"unsorted", "invalid_file_ticker", "duplicate_source_ticker"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> SampleReport:
    return generate_universe(tmp_path_factory.mktemp("clean"), n_tickers=6, years=1.0, seed=11)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> SampleReport:
    out = tmp_path_factory.mktemp("messy")
    return generate_universe(out, n_tickers=6, years=1.0, seed=11, messy=True)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> SampleReport:
    return generate_universe(tmp_path_factory.mktemp("medium"), n_tickers=24, years=3.0, seed=3)


def _txt_files(root: Path) -> dict[str, bytes]:
    base = root / RAW
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*.txt"))}


def _clean_files(report: SampleReport) -> dict[str, bytes]:
    universe = json.loads((report.truth_dir / "universe.json").read_text())
    messy = {Path(f).relative_to(RAW).as_posix() for f in universe["messy_files"]}
    return {k: v for k, v in _txt_files(report.out_dir).items() if k not in messy}


def _read_bars(files: dict[str, bytes]) -> pl.DataFrame:
    """Parse clean files strictly (all strings) to check the exact text, too."""
    frames = []
    for rel, data in files.items():
        frame = pl.read_csv(data, infer_schema=False).rename(lambda c: c.strip("<>").lower())
        frames.append(frame.with_columns(file=pl.lit(rel)))
    df = pl.concat(frames)
    nums = {c: pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "vol")}
    return df.with_columns(trade_date=pl.col("date").str.strptime(pl.Date, "%Y%m%d"), **nums)


# --------------------------------------------------------------------------- clean universe


def test_report_counts_match_files(clean: SampleReport) -> None:
    files = _txt_files(clean.out_dir)
    assert clean.tickers == 6
    assert clean.files_written == len(files) == 6
    assert clean.bytes_written == sum(len(v) for v in files.values())
    assert clean.bars_written == sum(v.count(b"\n") - 1 for v in files.values())
    assert clean.truth_dir == clean.out_dir / "_truth"
    assert not (clean.truth_dir / "defects.json").exists()


def test_layout_and_line_format(clean: SampleReport) -> None:
    files = _clean_files(clean)
    for rel, data in files.items():
        m = FILE_RE.match(rel)
        assert m, rel
        assert b"\r" not in data and data.endswith(b"\n")
        lines = data.decode("ascii").split("\n")[:-1]
        assert lines[0] == HEADER
        assert all(len(line.split(",")) == 10 for line in lines[1:])
        assert {line.split(",", 1)[0] for line in lines[1:]} == {m.group(3).upper()}
    bars = _read_bars(files)
    assert (bars["per"] == "D").all() and (bars["time"] == "000000").all()
    assert (bars["openint"] == "0").all()
    assert bars["vol"].min() > 0
    # Prices carry at most 6 decimals, like Stooq.
    assert not bars["close"].cast(pl.String).str.contains(r"\.\d{7,}").any()


def test_dates_are_consecutive_business_days(clean: SampleReport) -> None:
    bars = _read_bars(_clean_files(clean))
    assert (bars["trade_date"].dt.weekday() <= 5).all()
    step = bars.select(
        d=pl.col("trade_date").diff().over("ticker").dt.total_days(),
        wd=pl.col("trade_date").dt.weekday(),
    ).drop_nulls()
    assert set(step.filter(pl.col("wd") == 1)["d"].to_list()) == {3}
    assert set(step.filter(pl.col("wd") > 1)["d"].to_list()) == {1}
    last = bars.group_by("ticker").agg(pl.col("trade_date").max())["trade_date"]
    assert (last == datetime.date(2025, 12, 31)).all()


def test_ohlc_positive_consistent_and_not_suspicious(clean: SampleReport) -> None:
    bars = _read_bars(_clean_files(clean))
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert (lo > 0).all()
    assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all() and (lo < h).all()
    assert (np.abs(c / o - 1) <= 0.3).all() and ((h - lo) / c <= 0.5).all()


def test_truth_matches_bars_written(clean: SampleReport) -> None:
    truth = pl.read_parquet(clean.truth_dir / "regimes.parquet")
    assert truth.schema == pl.Schema(
        {"ticker": pl.String, "trade_date": pl.Date, "regime": pl.Int8}
    )
    bars = _read_bars(_clean_files(clean)).select("ticker", "trade_date")
    assert len(truth) == len(bars) == clean.bars_written
    assert (
        truth.select("ticker", "trade_date")
        .sort("ticker", "trade_date")
        .equals(bars.sort("ticker", "trade_date"))
    )
    assert set(truth["regime"].unique().to_list()) <= {0, 1, 2, 3}
    universe = json.loads((clean.truth_dir / "universe.json").read_text())
    assert universe["seed"] == 11 and universe["n_tickers"] == 6
    assert [r["name"] for r in universe["regimes"]] == [
        "accumulation",
        "markup",
        "distribution",
        "markdown",
    ]
    tickers = pl.read_parquet(clean.truth_dir / "tickers.parquet")
    counts = truth.group_by("ticker").len().sort("ticker")
    assert tickers.sort("ticker")["n_bars"].to_list() == counts["len"].to_list()


def test_deterministic_under_seed(clean: SampleReport, tmp_path: Path) -> None:
    again = generate_universe(tmp_path / "a", n_tickers=6, years=1.0, seed=11)
    other = generate_universe(tmp_path / "b", n_tickers=6, years=1.0, seed=12)
    assert _txt_files(again.out_dir) == _txt_files(clean.out_dir)
    assert _txt_files(other.out_dir) != _txt_files(clean.out_dir)
    first = pl.read_parquet(clean.truth_dir / "regimes.parquet")
    assert pl.read_parquet(again.truth_dir / "regimes.parquet").equals(first)


def test_messy_keeps_clean_files_identical(clean: SampleReport, messy: SampleReport) -> None:
    assert _clean_files(messy) == _txt_files(clean.out_dir)
    truth = pl.read_parquet(messy.truth_dir / "regimes.parquet")
    assert truth.equals(pl.read_parquet(clean.truth_dir / "regimes.parquet"))


def test_progress_and_regeneration(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_universe(tmp_path, n_tickers=5, years=0.2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (5, 5) and all(t == 5 for _, t in calls)
    report = generate_universe(tmp_path, n_tickers=3, years=0.2)  # stale files are cleared
    assert len(_txt_files(tmp_path)) == report.files_written == 3


def test_refuses_foreign_raw_tree(tmp_path: Path) -> None:
    foreign = tmp_path / RAW / "nyse stocks" / "1" / "ibm.us.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(HEADER + "\n")
    with pytest.raises(FileExistsError):
        generate_universe(tmp_path, n_tickers=2, years=0.1)
    assert foreign.exists()


def test_buckets_and_exchange_mix(tmp_path: Path) -> None:
    report = generate_universe(tmp_path, n_tickers=2100, years=0.05, seed=5)
    rels = list(_txt_files(report.out_dir))
    assert len(rels) == 2100
    per_bucket = Counter(rel.rsplit("/", 1)[0] for rel in rels)
    assert max(per_bucket.values()) <= 1000
    for ex in ("nasdaq stocks", "nyse stocks"):
        buckets = sorted(int(k.split("/")[1]) for k in per_bucket if k.startswith(ex))
        assert buckets == list(range(1, len(buckets) + 1))
    nasdaq = sum(n for k, n in per_bucket.items() if k.startswith("nasdaq"))
    assert 0.45 < nasdaq / 2100 < 0.65


def test_ticker_pool_distinct_and_realistic() -> None:
    names = _ticker_pool(np.random.default_rng(1), 8000)
    assert len(set(names)) == 8000
    assert all(re.fullmatch(r"[A-Z]{1,5}", n) for n in names)
    assert names[:100] == _ticker_pool(np.random.default_rng(1), 100)


def test_history_lengths_mean_about_70_percent(tmp_path: Path) -> None:
    report = generate_universe(tmp_path, n_tickers=400, years=0.5, seed=9)
    tickers = pl.read_parquet(report.truth_dir / "tickers.parquet")
    full = json.loads((report.truth_dir / "universe.json").read_text())["business_days"]
    share = tickers["n_bars"] / full
    assert 0.62 < share.mean() < 0.78
    assert (share == 1).mean() > 0.3


# --------------------------------------------------------------------------- regime signal


def test_regimes_shift_close_location_volume_and_drift(medium: SampleReport) -> None:
    bars = _read_bars(_txt_files(medium.out_dir))
    truth = pl.read_parquet(medium.truth_dir / "regimes.parquet")
    df = bars.join(truth, on=["ticker", "trade_date"]).with_columns(
        clv=(pl.col("close") - pl.col("low")) / (pl.col("high") - pl.col("low")),
        lvol=(pl.col("vol").log() - pl.col("vol").log().mean()).over("ticker"),
        ret=pl.col("close").log().diff().over("ticker"),
        up=pl.col("regime") <= 1,
    )
    by = df.group_by("up").agg(pl.col("clv", "lvol").mean()).sort("up")
    assert by["clv"][1] - by["clv"][0] > 0.15
    assert by["lvol"][1] - by["lvol"][0] > 0.15
    drift = df.group_by("regime").agg(pl.col("ret").mean()).sort("regime")["ret"].to_list()
    assert drift[1] > 0 > drift[3]
    runs = truth.with_columns(
        new=(pl.col("regime") != pl.col("regime").shift()).over("ticker").fill_null(True)
    )
    mean_dwell = len(runs) / runs["new"].sum()
    assert 20 < mean_dwell < 90
    assert truth["regime"].n_unique() == 4


# --------------------------------------------------------------------------- messy files


def _findings(data: bytes, hint: str) -> set[tuple[int | None, str]]:
    """A small independent checker: what a validator must find in one raw file."""
    found: set[tuple[int | None, str]] = set()
    if not data:
        return {(None, "empty_file")}
    if data.startswith(b"\xef\xbb\xbf"):
        found.add((None, "bom"))
        data = data[3:]
    if b"\r\n" in data:
        found.add((None, "crlf"))
    lines = data.decode().replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    numbered = [(i + 1, s) for i, s in enumerate(lines) if s.strip()]
    first_blank = min((i + 1 for i, s in enumerate(lines) if not s.strip()), default=None)
    if first_blank is not None and first_blank < numbered[-1][0]:
        found.add((None, "blank_lines"))
    if numbered[0][1].replace("\ufeff", "") == HEADER:
        numbered = numbered[1:]
    else:
        found.add((None, "missing_header"))
    if not numbered:
        return found | {(None, "header_only")}
    rows: list[tuple[int, datetime.date, str]] = []
    previous = None
    for no, text in numbered:
        f = text.split(",")
        if len(f) < 10:
            found.add((no, f"too_few_columns:{len(f)}"))
        if len(f) > 10:
            found.add((no, f"too_many_columns:{len(f)}"))
        f = (f + [""] * 10)[:10]
        if text == previous:
            found.add((no, "duplicate_line"))
        previous = text
        assert f[0] == hint
        if f[1] != "D":
            found.add((no, "bad_timeframe"))
        try:
            o, h, lo, c, v = (float(x) for x in f[4:9])
            day = datetime.datetime.strptime(f[2], "%Y%m%d").date()
        except ValueError:
            found.add((no, "parse_error"))
            continue
        rows.append((no, day, text))
        if min(o, h, lo, c) <= 0:
            found.add((no, "nonpositive_price"))
        if h < lo:
            found.add((no, "high_lt_low"))
        if not (lo <= o <= h and lo <= c <= h):
            found.add((no, "ohlc_outside_hl"))
        if v == 0:
            found.add((no, "zero_volume"))
        if (h - lo) / abs(c) > 0.5 or abs(c / o - 1) > 0.3:
            found.add((no, "suspicious_bar"))
    days = [d for _, d, _ in rows]
    if days != sorted(days):
        found.add((None, "unsorted"))
    by_day: dict[datetime.date, set[str]] = {}
    for _, d, text in rows:
        by_day.setdefault(d, set()).add(text)
    found |= {(no, "duplicate_ticker_date") for no, d, _ in rows if len(by_day[d]) > 1}
    ordered = sorted(rows, key=lambda r: (r[1], r[0]))
    for (_, d0, _), (no, d1, _) in zip(ordered, ordered[1:], strict=False):
        if (d1 - d0).days > 7:
            found.add((no, "gap_in_calendar"))
    return found


def test_defects_cover_contract(messy: SampleReport) -> None:
    entries = json.loads((messy.truth_dir / "defects.json").read_text())
    assert {e["kind"] for e in entries} == set(CONTRACT) == set(DEFECT_KINDS)
    for e in entries:
        assert set(e) == {
            "kind",
            "source_file",
            "ticker",
            "line_no",
            "expected_reason",
            "expected_status",
        }
        reasons, status = CONTRACT[e["kind"]]
        assert e["expected_reason"] in reasons and e["expected_status"] == status
        assert (e["line_no"] is None) == (e["expected_reason"] in FILE_LEVEL)
        assert (messy.out_dir / e["source_file"]).is_file()
        assert e["source_file"].startswith("data/daily/us/") and "\\" not in e["source_file"]
    by_kind = Counter(e["kind"] for e in entries)
    assert by_kind["conflicting_duplicate"] == 2 and by_kind["duplicate_source"] == 2
    assert by_kind["crlf_bom"] == 2
    files = {e["source_file"] for e in entries}
    assert len(files) <= 25
    assert messy.files_written == 6 + len(files)
    all_files = _txt_files(messy.out_dir)
    assert messy.bytes_written == sum(len(v) for v in all_files.values())


def test_clean_files_have_no_findings(messy: SampleReport) -> None:
    for rel, data in _clean_files(messy).items():
        assert _findings(data, Path(rel).name[: -len(".txt")].upper()) == set(), rel


def test_each_defect_entry_is_really_there(messy: SampleReport) -> None:
    entries = json.loads((messy.truth_dir / "defects.json").read_text())
    by_file: dict[str, list[dict]] = {}
    for e in entries:
        by_file.setdefault(e["source_file"], []).append(e)
    for rel, file_entries in by_file.items():
        path = messy.out_dir / rel
        kind = file_entries[0]["kind"]
        hint = path.name[: -len(".txt")].upper()
        assert {e["ticker"] for e in file_entries} == {hint}
        found = _findings(path.read_bytes(), hint)
        expected = {(e["line_no"], e["expected_reason"]) for e in file_entries}
        by_name = {"invalid_file_ticker", "duplicate_source_ticker"}
        in_content = {x for x in expected if x[1] not in by_name}
        assert in_content <= found, (kind, expected, found)
        extra = {reason for _, reason in found - expected}
        assert extra <= set(DEFECT_SIDE_EFFECTS.get(kind, ())), (kind, extra)
        # The side effects sit on the planted line, never elsewhere.
        lines = {line for line, _ in expected if line is not None}
        assert all(line in lines for line, r in found - expected if line is not None)


def test_file_level_name_defects(messy: SampleReport) -> None:
    entries = json.loads((messy.truth_dir / "defects.json").read_text())
    bad = [e for e in entries if e["kind"] == "invalid_ticker_name"]
    assert len(bad) == 1 and re.search(r"[ !]", Path(bad[0]["source_file"]).name)
    dup = [e["source_file"] for e in entries if e["kind"] == "duplicate_source"]
    assert {Path(f).name for f in dup} == {Path(dup[0]).name}
    assert sorted(f.split("/")[3] for f in dup) == ["nasdaq stocks", "nyse stocks"]
    specific = {
        "empty_file": lambda b: b == b"",
        "header_only": lambda b: b == (HEADER + "\n").encode(),
        "crlf_bom": lambda b: b.startswith(b"\xef\xbb\xbf") and b.count(b"\n") == b.count(b"\r\n"),
        "missing_header": lambda b: (
            b.split(b"\n", 1)[0].count(b",") == 9 and not b.startswith(b"<")
        ),
    }
    for e in entries:
        if e["kind"] in specific:
            assert specific[e["kind"]]((messy.out_dir / e["source_file"]).read_bytes()), e


def test_specific_defect_lines(messy: SampleReport) -> None:
    """Parse each line-level defect's own line and check the property directly."""
    entries = json.loads((messy.truth_dir / "defects.json").read_text())
    for e in entries:
        if e["line_no"] is None:
            continue
        lines = (messy.out_dir / e["source_file"]).read_text().split("\n")
        line = lines[e["line_no"] - 1]
        f = line.split(",")
        kind = e["kind"]
        if kind == "short_row":
            assert len(f) == 7
        elif kind == "long_row":
            assert len(f) == 12
        elif kind == "non_numeric":
            assert f[7] == "abc"
        elif kind == "identical_duplicate":
            assert line == lines[e["line_no"] - 2]
        elif kind == "conflicting_duplicate":
            mates = [x for x in entries if x["kind"] == kind]
            pair = [lines[x["line_no"] - 1].split(",") for x in mates]
            assert pair[0][2] == pair[1][2] and pair[0][4:8] != pair[1][4:8]
        elif kind == "high_lt_low":
            assert float(f[5]) < float(f[6])
        elif kind == "zero_volume":
            assert float(f[8]) == 0 and min(map(float, f[4:8])) > 0
        elif kind == "negative_price":
            assert min(float(f[4]), float(f[6])) < 0
        elif kind == "suspicious_spike":
            o, h, lo, c = map(float, f[4:8])
            assert lo <= min(o, c) and max(o, c) <= h and float(f[8]) > 0
            assert c / o - 1 > 0.4 or (h - lo) / c > 0.6
        elif kind == "long_gap":
            prev = datetime.datetime.strptime(lines[e["line_no"] - 2].split(",")[2], "%Y%m%d")
            assert (datetime.datetime.strptime(f[2], "%Y%m%d") - prev).days >= 30
        elif kind == "non_daily_period":
            assert f[1] == "W"
        else:
            pytest.fail(f"unexpected line-level kind {kind}")
