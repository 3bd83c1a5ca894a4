"""Deterministic synthetic US daily-bar universe in Stooq's text layout.

Why it exists: it is the embedded default data of `mf demo`, the fixture of the test suite and
the load generator of the benchmarks, so it must look like a real Stooq dump (same folders,
file names, header and line format) while carrying a *known* ground truth.

Price model: every ticker follows its own hidden Markov chain over four regimes
(0 accumulation, 1 markup, 2 distribution, 3 markdown) with sticky transitions. A regime
shifts the daily drift, the volatility, the volume level and, above all, where the close
lands inside the bar's range (accumulation/markup close near the high on heavier volume,
distribution/markdown near the low). Money-flow indicators therefore carry real signal and the
research layer can score how well an HMM recovers the true states, which are written to
`<out>/_truth/regimes.parquet` (ticker, trade_date, regime) for every clean bar.

Messy mode (`messy=True`) adds a few extra files, each planted with one kind of raw-data defect
(missing header, short/long rows, duplicates, bad prices, gaps, BOM/CRLF, empty files, invalid
names, the same ticker under two exchanges, ...). They exist so the Bronze reader/validator and
the end-to-end tests can prove that every defect is detected and reported with the right reason
code at the right physical line; `<out>/_truth/defects.json` lists each planted defect exactly.
Clean files are identical with and without `messy`.

Null mode (`null=True`) writes a universe with NO structure to find: every regime gets the same
parameters (zero drift, one volatility level without the persistent volatility factor, one
volume level, a symmetric close location), so log prices are driftless random walks with iid
Student-t shocks. The regime paths are still drawn, so the tickers, histories and return shocks
are those of the planted universe with the same seed, but they change nothing, and the truth
says regime 0 everywhere. It exists to check that the research and validation layers find no edge
where there is none.

Everything is vectorised with numpy (regime paths via geometric dwell times and `np.repeat`,
prices via cumulative sums) and formatted with polars string expressions; tickers are generated
and written in batches so memory stays bounded for tens of millions of bars.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>"
RAW_SUBDIR = ("data", "daily", "us")
EXCHANGE_DIRS = {"NASDAQ": "nasdaq stocks", "NYSE": "nyse stocks"}
BUCKET_SIZE = 1000
TRUTH_DIRNAME = "_truth"
_MARKER = ".mf_sample"

# Regime definitions (index = regime id). Drift is in units of the ticker's base daily sigma.
REGIME_NAMES = ("accumulation", "markup", "distribution", "markdown")
K_REGIMES = len(REGIME_NAMES)
DRIFT_SIGMA_MULT = np.array([0.03, 0.10, -0.03, -0.12])
VOL_MULT = np.array([0.80, 1.00, 1.10, 1.35])
VOLUME_MULT = np.array([1.35, 1.20, 0.85, 1.00])
CLV_BETA_A = np.array([4.0, 5.0, 2.0, 2.0])  # close location in range ~ Beta(a, b)
CLV_BETA_B = np.array([2.0, 2.0, 4.0, 5.0])
DWELL_MEAN = np.array([60.0, 45.0, 55.0, 38.0])  # bars; scaled per ticker by DWELL_SCALE
DWELL_SCALE = (0.8, 1.3)
# On leaving a regime, the next one is (current + step) % 4: mostly the next Wyckoff phase.
JUMP_STEPS = np.array([1, 2, 3])
JUMP_PROBS = np.array([0.75, 0.10, 0.15])
NULL_REGIME_NAME = "null"
NULL_CLV_BETA = 3.0  # symmetric close location ~ Beta(3, 3), mean 0.5
_PLANTED_VOL_NOISE = 0.25  # scale of the persistent log-volatility factor

# Caps keeping clean bars clear of the validator's suspicious-bar thresholds
# (|close/open - 1| > 0.3, (high - low)/close > 0.5): |log(C/O)| <= 0.21, log range <= 0.37.
_RET_CAP = 0.17
_GAP_CAP = 0.04
_RANGE_CAP = 0.16
_LOG_PRICE_FLOOR = math.log(0.2)
_LOG_PRICE_LIFT = math.log(1.0)
_FLOOR_SHARPNESS = 4.0

_FULL_HISTORY_SHARE = 0.40  # the rest IPO later, uniformly, giving ~70 % mean history
_NASDAQ_SHARE_LONG = 0.80  # 4-5 letter names are mostly NASDAQ, 1-3 letter mostly NYSE
_NASDAQ_SHARE_SHORT = 0.15
_FRACTIONAL_VOLUME_SHARE = 0.20  # split-adjusted volumes with decimals, as in Stooq
_BATCH_CELLS = 1_200_000  # tickers x calendar days simulated at once (memory bound)

# Planted defects: kind -> (expected reasons, expected status). Order = order in defects.json.
DEFECT_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "missing_header": (("missing_header",), "OK"),
    "blank_lines": (("blank_lines",), "OK"),
    "short_row": (("too_few_columns:7",), "OK"),
    "long_row": (("too_many_columns:12",), "OK"),
    "non_numeric": (("parse_error",), "OK"),
    "identical_duplicate": (("duplicate_line",), "OK"),
    "conflicting_duplicate": (("duplicate_ticker_date",), "OK"),
    "high_lt_low": (("high_lt_low",), "OK"),
    "zero_volume": (("zero_volume",), "OK"),
    "negative_price": (("nonpositive_price",), "OK"),
    "suspicious_spike": (("suspicious_bar",), "OK"),
    "long_gap": (("gap_in_calendar",), "OK"),
    "crlf_bom": (("bom", "crlf"), "OK"),
    "empty_file": (("empty_file",), "EMPTY"),
    "header_only": (("header_only",), "EMPTY"),
    "unsorted": (("unsorted",), "OK"),
    "non_daily_period": (("bad_timeframe",), "OK"),
    "invalid_ticker_name": (("invalid_file_ticker",), "FAILED"),
    "duplicate_source": (("duplicate_source_ticker",), "FAILED"),
}
# Reasons a validator may legitimately raise *in addition* on the same planted line (they
# cannot be avoided: e.g. any negative price also makes the range > 50 % of the close).
DEFECT_SIDE_EFFECTS: dict[str, tuple[str, ...]] = {
    "short_row": ("missing_field", "parse_error"),
    "non_numeric": ("missing_field",),
    "identical_duplicate": ("duplicate_ticker_date",),
    "high_lt_low": ("ohlc_outside_hl",),
    "negative_price": ("suspicious_bar",),
}
INVALID_FILE_NAME = "bad ticker!.us.txt"
_MESSY_MIN_BARS = 60
_MESSY_MAX_BARS = 250


@dataclass(frozen=True)
class SampleReport:
    """What `generate_universe` wrote (the CLI prints it)."""

    out_dir: Path
    tickers: int
    files_written: int
    bars_written: int  # data lines written, clean + messy
    bytes_written: int  # bytes of the .txt files
    truth_dir: Path  # <out_dir>/_truth


@dataclass(frozen=True)
class _Model:
    """Per-regime bar parameters (index = regime id) and the persistent volatility factor."""

    drift_sigma_mult: np.ndarray
    vol_mult: np.ndarray
    volume_mult: np.ndarray
    clv_beta_a: np.ndarray
    clv_beta_b: np.ndarray
    vol_noise: float


_PLANTED = _Model(DRIFT_SIGMA_MULT, VOL_MULT, VOLUME_MULT, CLV_BETA_A, CLV_BETA_B,
                  _PLANTED_VOL_NOISE)
_NULL = _Model(np.zeros(K_REGIMES), np.ones(K_REGIMES), np.ones(K_REGIMES),
               np.full(K_REGIMES, NULL_CLV_BETA), np.full(K_REGIMES, NULL_CLV_BETA), 0.0)


@dataclass(frozen=True)
class _Params:
    """Per-ticker static parameters, drawn once so batches never change them."""

    sigma: np.ndarray
    base_price: np.ndarray
    base_volume: np.ndarray
    dwell: np.ndarray  # (n, K) mean dwell bars per regime
    n_bars: np.ndarray
    fractional_volume: np.ndarray

    def take(self, idx: slice) -> _Params:
        return _Params(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


# --------------------------------------------------------------------------- names & calendar


def _ticker_pool(rng: np.random.Generator, n: int) -> list[str]:
    """Distinct realistic 1-5 letter symbols in draw order (a prefix is stable as n grows)."""
    vowels = np.frombuffer(b"AEIOU", dtype=np.uint8)
    v_w = np.array([8.0, 7.0, 6.0, 5.0, 2.0])
    cons = np.frombuffer(b"BCDFGHJKLMNPQRSTVWXYZ", dtype=np.uint8)
    c_w = np.array([3, 6, 4, 3, 3, 3, 1, 2, 5, 5, 5, 4, 1, 6, 7, 7, 2, 2, 1, 1, 1], dtype=float)
    lengths = np.arange(1, 6)
    len_w = np.array([0.01, 0.06, 0.30, 0.48, 0.15])
    seen: dict[str, None] = {}
    chunk = 4096
    while len(seen) < n:
        size = (chunk, 5)
        is_vowel = rng.random(size) < 0.28
        codes = np.where(
            is_vowel,
            rng.choice(vowels, size=size, p=v_w / v_w.sum()),
            rng.choice(cons, size=size, p=c_w / c_w.sum()),
        ).astype(np.uint8)
        length = rng.choice(lengths, size=chunk, p=len_w)
        codes[np.arange(5)[None, :] >= length[:, None]] = 0
        names = codes.view("S5").ravel().astype(str)
        seen.update(dict.fromkeys(names.tolist()))
    return list(seen)[:n]


def _business_days(end: datetime.date, n: int) -> np.ndarray:
    """The last `n` Mon-Fri days on or before `end` (no holiday calendar, like the brief)."""
    last = np.busday_offset(np.datetime64(end, "D"), 0, roll="backward")
    first = np.busday_offset(last, -(n - 1))
    days = np.arange(first, last + np.timedelta64(1, "D"), dtype="datetime64[D]")
    return days[np.is_busday(days)]


def _n_business_days(end: datetime.date, years: float) -> int:
    start = np.datetime64(end, "D") - np.timedelta64(round(years * 365.25), "D")
    return int(np.busday_count(start + np.timedelta64(1, "D"), np.datetime64(end, "D") + 1))


# --------------------------------------------------------------------------- simulation


def _draw_params(rng: np.random.Generator, n: int, t_days: int) -> _Params:
    """Per-ticker price level, volatility, volume level, regime dwell and history length."""
    sigma = np.clip(np.exp(rng.normal(math.log(0.018), 0.35, n)), 0.008, 0.045)
    base_price = np.clip(np.exp(rng.normal(math.log(25.0), 1.0, n)), 1.5, 600.0)
    base_volume = np.clip(np.exp(rng.normal(math.log(400_000.0), 1.3, n)), 5e3, 5e7)
    dwell = DWELL_MEAN[None, :] * rng.uniform(*DWELL_SCALE, size=(n, K_REGIMES))
    frac = rng.uniform(0.03, 1.0, n)
    full = rng.random(n) < _FULL_HISTORY_SHARE
    min_bars = min(t_days, 40)
    n_bars = np.where(full, t_days, np.maximum(np.round(frac * t_days), min_bars)).astype(np.int64)
    fractional = rng.random(n) < _FRACTIONAL_VOLUME_SHARE
    return _Params(sigma, base_price, base_volume, dwell, n_bars, fractional)


def _smooth_noise(rng: np.random.Generator, nb: int, t_days: int, window: int) -> np.ndarray:
    """Unit-variance moving-average noise: persistent factors without a recursive loop."""
    cs = np.cumsum(rng.standard_normal((nb, t_days + window)), axis=1)
    return (cs[:, window:] - cs[:, :-window]) / math.sqrt(window)


def _simulate_regimes(rng: np.random.Generator, dwell: np.ndarray, t_days: int) -> np.ndarray:
    """Regime paths (nb, T) from geometric dwell times and cyclic jumps, no per-bar loop."""
    nb = dwell.shape[0]
    n_seg = int(2 * t_days / dwell.min()) + 16
    stationary = dwell / dwell.sum(axis=1, keepdims=True)
    first = (rng.random(nb)[:, None] > np.cumsum(stationary, axis=1)).sum(axis=1)
    first = np.minimum(first, K_REGIMES - 1)
    steps = rng.choice(JUMP_STEPS, size=(nb, n_seg - 1), p=JUMP_PROBS)
    states = (first[:, None] + np.concatenate([np.zeros((nb, 1), int), steps], 1).cumsum(1)) % 4
    durations = rng.geometric(1.0 / np.take_along_axis(dwell, states, axis=1))
    durations[:, -1] = t_days  # guarantees coverage of the whole calendar
    ends = np.minimum(np.cumsum(durations, axis=1), t_days)
    clipped = np.diff(ends, axis=1, prepend=0)
    return np.repeat(states.ravel().astype(np.int8), clipped.ravel()).reshape(nb, t_days)


def _simulate(
    rng: np.random.Generator, p: _Params, t_days: int, model: _Model = _PLANTED
) -> dict[str, np.ndarray]:
    """Visible bars of a batch, flattened ticker-major: ids, day index, regime, OHLCV."""
    nb = p.sigma.shape[0]
    shape = (nb, t_days)
    regime = _simulate_regimes(rng, p.dwell, t_days)
    vol_factor = np.exp(model.vol_noise * _smooth_noise(rng, nb, t_days, 20))
    sig = p.sigma[:, None] * model.vol_mult[regime] * vol_factor
    z = rng.standard_t(5.0, size=shape) * math.sqrt(3.0 / 5.0)
    drift = model.drift_sigma_mult[regime] * p.sigma[:, None]
    ret = np.clip(drift + sig * z, -_RET_CAP, _RET_CAP)
    gap = np.clip(0.3 * sig * rng.standard_normal(shape), -_GAP_CAP, _GAP_CAP)
    wick = np.minimum(sig * (0.7 + 0.6 * rng.standard_exponential(shape)), _RANGE_CAP)
    clv = rng.beta(model.clv_beta_a[regime], model.clv_beta_b[regime])
    log_v = (
        np.log(p.base_volume)[:, None]
        + np.log(model.volume_mult[regime])
        + 0.35 * _smooth_noise(rng, nb, t_days, 10)
        + 0.20 * rng.standard_normal(shape)
        + 0.25 * np.clip(np.abs(z) - 0.8, -1.0, 3.0)
    )
    start = t_days - p.n_bars
    x = np.cumsum(ret, axis=1)
    x += (np.log(p.base_price) - x[np.arange(nb), start])[:, None]  # first visible close
    visible = np.arange(t_days)[None, :] >= start[:, None]
    # Lift paths that would sink below ~$1 (random walks over decades do): penny-stock floors
    # would otherwise squash their volatility and ranges.
    low_point = np.where(visible, x, np.inf).min(axis=1)
    x += np.maximum(_LOG_PRICE_LIFT - low_point, 0.0)[:, None]
    log_o = x - ret + gap
    # Wicks beyond the body: the regime's close location `clv` splits them (a high clv leaves
    # a short upper wick, so the close sits near the high).
    log_h = np.maximum(x, log_o) + (1.0 - clv) * wick
    log_l = np.minimum(x, log_o) - clv * wick

    tid, day = np.nonzero(visible)

    def price(a: np.ndarray) -> np.ndarray:
        # A smooth monotone floor keeps prices positive without breaking OHLC order.
        y = a[visible] - _LOG_PRICE_FLOOR
        return np.exp(_LOG_PRICE_FLOOR + np.logaddexp(0.0, _FLOOR_SHARPNESS * y) / _FLOOR_SHARPNESS)

    o, h, lo, c = price(log_o), price(log_h), price(log_l), price(x)
    # Same decimals for the four prices of a bar, so rounding (monotone) keeps OHLC order.
    scale = 10.0 ** np.clip(6.0 - np.floor(np.log10(h)), 2.0, 6.0)
    o, h, lo, c = (np.round(a * scale) / scale for a in (o, h, lo, c))
    vol = np.maximum(np.exp(log_v[visible]), 100.0)
    vol = np.where(p.fractional_volume[tid], np.round(vol, 3), np.round(vol))
    return {
        "tid": tid.astype(np.int32),
        "day": day.astype(np.int32),
        "regime": regime[visible],
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": vol,
    }


def _format_lines(
    bars: dict[str, np.ndarray], tickers: pl.Series, dates: pl.Series
) -> pl.DataFrame:
    """Stooq data lines (no newline) with their batch ticker id, built by polars, not Python."""

    def num(col: str) -> pl.Expr:
        return pl.col(col).cast(pl.String).str.strip_suffix(".0")

    tid = pl.Series(bars["tid"])
    frame = pl.DataFrame(
        {
            "tid": tid,
            "tk": tickers.gather(tid),
            "date": dates.gather(pl.Series(bars["day"])),
            **{k: bars[k] for k in ("open", "high", "low", "close", "volume")},
        }
    )
    return frame.select(
        "tid",
        pl.concat_str(
            [
                pl.col("tk"),
                pl.lit("D"),
                pl.col("date"),
                pl.lit("000000"),
                *(num(k) for k in ("open", "high", "low", "close", "volume")),
                pl.lit("0"),
            ],
            separator=",",
        ).alias("line"),
    )


# --------------------------------------------------------------------------- output helpers


def _prepare_out_dir(out_dir: Path) -> None:
    """Clear a previous sample in place; refuse to touch a raw tree we did not generate."""
    raw = out_dir.joinpath(*RAW_SUBDIR)
    truth = out_dir / TRUTH_DIRNAME
    if (truth / _MARKER).exists():
        for sub in EXCHANGE_DIRS.values():
            shutil.rmtree(raw / sub, ignore_errors=True)
        shutil.rmtree(truth)
    elif raw.exists() and any(raw.rglob("*.txt")):
        raise FileExistsError(f"{raw} holds .txt files not written by the sample generator")
    truth.mkdir(parents=True, exist_ok=True)
    (truth / _MARKER).write_text("generated by mf_pipeline.lib.sample\n")


def _dump_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# --------------------------------------------------------------------------- messy files


def _split(line: str) -> list[str]:
    return line.split(",")


def _plant(
    kind: str, body: list[str], days: np.ndarray, pos: int, rng: np.random.Generator
) -> tuple[bytes, list[int | None], int]:
    """File bytes with one defect of `kind`, the defect's line numbers, and data lines written.

    `body` are the clean data lines; data line i sits on physical line i + 2 (after the header).
    """
    b = list(body)
    ln = pos + 2
    lines_at: list[int | None] = [ln]
    if kind == "missing_header":
        return ("\n".join(b) + "\n").encode(), [None], len(b)
    if kind == "blank_lines":
        out = [HEADER, *b[:pos], "", "", *b[pos : pos + 7], "", *b[pos + 7 :]]
        return ("\n".join(out) + "\n").encode(), [None], len(b)
    if kind == "crlf_bom":
        return b"\xef\xbb\xbf" + ("\r\n".join([HEADER, *b]) + "\r\n").encode(), [None], len(b)
    if kind == "empty_file":
        return b"", [None], 0
    if kind == "header_only":
        return (HEADER + "\n").encode(), [None], 0
    if kind == "unsorted":
        perm = rng.permutation(len(b))
        if np.all(np.diff(perm) > 0):
            perm = perm[::-1]
        b = np.asarray(b, dtype=object)[perm].tolist()
        lines_at = [None]
    elif kind in ("invalid_ticker_name", "duplicate_source"):
        lines_at = [None]
    else:
        f = _split(b[pos])
        if kind == "short_row":
            b[pos] = ",".join(f[:7])
        elif kind == "long_row":
            b[pos] = ",".join([*f, "0", "0"])
        elif kind == "non_numeric":
            f[7] = "abc"
            b[pos] = ",".join(f)
        elif kind == "identical_duplicate":
            b.insert(pos + 1, b[pos])
            lines_at = [ln + 1]
        elif kind == "conflicting_duplicate":
            moved = [f"{float(v) * 1.02:.4f}" for v in f[4:8]]
            b.insert(pos + 1, ",".join([*f[:4], *moved, *f[8:]]))
            lines_at = [ln, ln + 1]
        elif kind == "high_lt_low":
            f[5], f[6] = f[6], f[5]
            b[pos] = ",".join(f)
        elif kind == "zero_volume":
            f[8] = "0"
            b[pos] = ",".join(f)
        elif kind == "negative_price":
            f[6] = "-" + f[6]
            b[pos] = ",".join(f)
        elif kind == "suspicious_spike":
            o = float(f[4])
            close = o * 1.45
            f[5], f[6], f[7] = f"{close * 1.004:.4f}", f"{min(float(f[6]), o):.4f}", f"{close:.4f}"
            b[pos] = ",".join(f)
        elif kind == "long_gap":
            # Drop the bars of the next 30 calendar days: a >= 31-day jump to the next bar.
            nxt = int(np.searchsorted(days, days[pos] + np.timedelta64(31, "D")))
            b = b[: pos + 1] + b[nxt:]
            lines_at = [ln + 1]
        elif kind == "non_daily_period":
            f[1] = "W"
            b[pos] = ",".join(f)
        else:  # pragma: no cover - guarded by DEFECT_KINDS
            raise ValueError(f"unknown defect kind {kind}")
    return ("\n".join([HEADER, *b]) + "\n").encode(), lines_at, len(b)


def _write_messy(
    out_dir: Path,
    names: list[str],
    seed: int,
    end_date: datetime.date,
    t_days: int,
    next_bucket: dict[str, int],
    model: _Model,
) -> tuple[list[dict[str, Any]], list[str], int, int]:
    """Extra defect files (one kind each); returns defect entries, files, bars and bytes."""
    kinds = list(DEFECT_KINDS)
    n = len(kinds)
    rng = np.random.default_rng([seed, 3])
    n_days = max(_MESSY_MIN_BARS, min(t_days, _MESSY_MAX_BARS))
    days = _business_days(end_date, n_days)
    n_days = len(days)
    params = _draw_params(rng, n, n_days)
    params = dataclasses.replace(params, n_bars=np.full(n, n_days, dtype=np.int64))
    stems = [f"{name}.US" for name in names]
    stems[kinds.index("invalid_ticker_name")] = INVALID_FILE_NAME[: -len(".txt")].upper()
    bars = _simulate(rng, params, n_days, model)
    date_str = pl.Series(days).dt.strftime("%Y%m%d")
    lines = _format_lines(bars, pl.Series(stems), date_str)
    per_ticker = lines.group_by("tid", maintain_order=True).agg("line")["line"].to_list()

    entries: list[dict[str, Any]] = []
    files: list[str] = []
    n_bars = n_bytes = 0
    for i, kind in enumerate(kinds):
        exchanges = (
            ["NASDAQ", "NYSE"] if kind == "duplicate_source" else [("NASDAQ", "NYSE")[i % 2]]
        )
        pos = n_days // 2 - 5 + int(rng.integers(0, 10))
        data, lines_at, written = _plant(kind, per_ticker[i], days, pos, rng)
        fname = INVALID_FILE_NAME if kind == "invalid_ticker_name" else f"{stems[i].lower()}.txt"
        reasons, status = DEFECT_KINDS[kind]
        for ex in exchanges:
            folder = out_dir.joinpath(*RAW_SUBDIR, EXCHANGE_DIRS[ex], str(next_bucket[ex]))
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / fname
            path.write_bytes(data)
            rel = _rel(path, out_dir)
            files.append(rel)
            n_bars += written
            n_bytes += len(data)
            ticker = fname[: -len(".txt")].strip().upper()
            for reason in reasons:
                for line_no in lines_at:
                    entries.append(
                        {
                            "kind": kind,
                            "source_file": rel,
                            "ticker": ticker,
                            "line_no": line_no,
                            "expected_reason": reason,
                            "expected_status": status,
                        }
                    )
    return entries, files, n_bars, n_bytes


# --------------------------------------------------------------------------- public API


def generated_null_flag(out_dir: Path) -> bool | None:
    """Whether the universe generated under `out_dir` is a null one; None when there is none."""
    meta = Path(out_dir) / TRUTH_DIRNAME / "universe.json"
    if not meta.is_file():
        return None
    return bool(json.loads(meta.read_text()).get("null", False))


def generate_universe(
    out_dir: Path,
    n_tickers: int = 300,
    years: float = 20.0,
    seed: int = 7,
    messy: bool = False,
    end_date: datetime.date = datetime.date(2025, 12, 31),
    progress: Callable[[int, int], None] | None = None,
    null: bool = False,
) -> SampleReport:
    """Write a synthetic Stooq-layout universe under `out_dir` plus its ground truth.

    Deterministic in (n_tickers, years, seed, messy, end_date, null). `progress(done, total)`
    is called after each batch of a few hundred tickers. `null=True`: no regimes at all (see
    the module docstring); the output for `null=False` is unchanged by the option.
    """
    if n_tickers < 1:
        raise ValueError("n_tickers must be >= 1")
    if years <= 0:
        raise ValueError("years must be > 0")
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    truth_dir = out_dir / TRUTH_DIRNAME
    t_days = max(_n_business_days(end_date, years), 2)
    days = _business_days(end_date, t_days)
    t_days = len(days)
    date_str = pl.Series(days).dt.strftime("%Y%m%d")
    date_val = pl.Series(days)

    n_messy = len(DEFECT_KINDS)
    pool = _ticker_pool(np.random.default_rng([seed, 2]), n_tickers + n_messy)
    names = np.array(sorted(pool[:n_tickers]))  # alphabetical, so truth is sorted too
    rng = np.random.default_rng([seed, 0])
    lengths = np.char.str_len(names)
    nasdaq_p = np.where(lengths >= 4, _NASDAQ_SHARE_LONG, _NASDAQ_SHARE_SHORT)
    exchange = np.where(rng.random(n_tickers) < nasdaq_p, "NASDAQ", "NYSE")
    params = _draw_params(rng, n_tickers, t_days)
    model = _NULL if null else _PLANTED
    rank = np.zeros(n_tickers, dtype=np.int64)
    next_bucket: dict[str, int] = {}
    for ex in EXCHANGE_DIRS:
        members = np.flatnonzero(exchange == ex)
        rank[members] = np.arange(members.size)
        next_bucket[ex] = members.size // BUCKET_SIZE + 2 if members.size else 1
    bucket = rank // BUCKET_SIZE + 1
    tickers = np.char.add(names, ".US")
    rel_paths = [
        f"{'/'.join(RAW_SUBDIR)}/{EXCHANGE_DIRS[ex]}/{bk}/{tk.lower()}.txt"
        for ex, bk, tk in zip(exchange.tolist(), bucket.tolist(), tickers.tolist(), strict=True)
    ]
    for folder in {p.rsplit("/", 1)[0] for p in rel_paths}:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)

    batch = max(8, _BATCH_CELLS // t_days)
    parts_dir = truth_dir / ".regimes_parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    header = HEADER + "\n"
    n_bars = n_bytes = 0
    for b_idx, lo in enumerate(range(0, n_tickers, batch)):
        sl = slice(lo, min(lo + batch, n_tickers))
        bars = _simulate(np.random.default_rng([seed, 1, b_idx]), params.take(sl), t_days, model)
        regime = np.zeros_like(bars["regime"]) if null else bars["regime"]
        batch_tickers = pl.Series(tickers[sl])
        lines = _format_lines(bars, batch_tickers, date_str)
        texts = lines.group_by("tid", maintain_order=True).agg(pl.col("line").str.join("\n"))
        for tid, text in zip(texts["tid"].to_list(), texts["line"].to_list(), strict=True):
            data = (header + text + "\n").encode()
            (out_dir / rel_paths[lo + tid]).write_bytes(data)
            n_bytes += len(data)
        n_bars += len(lines)
        part = parts_dir / f"part-{b_idx:05d}.parquet"
        pl.DataFrame(
            {
                "ticker": batch_tickers.gather(pl.Series(bars["tid"])),
                "trade_date": date_val.gather(pl.Series(bars["day"])),
                "regime": pl.Series(regime, dtype=pl.Int8),
            }
        ).write_parquet(part)
        parts.append(part)
        if progress is not None:
            progress(sl.stop, n_tickers)
    pl.scan_parquet(parts).sink_parquet(truth_dir / "regimes.parquet")
    shutil.rmtree(parts_dir)

    first_day = days[t_days - params.n_bars]
    pl.DataFrame(
        {
            "ticker": tickers,
            "exchange": exchange,
            "source_file": rel_paths,
            "first_date": first_day,
            "last_date": np.full(n_tickers, days[-1]),
            "n_bars": params.n_bars,
            "sigma": params.sigma,
            "base_volume": params.base_volume,
            "fractional_volume": params.fractional_volume,
            **{f"dwell_{k}": params.dwell[:, k] for k in range(K_REGIMES)},
        }
    ).write_parquet(truth_dir / "tickers.parquet")

    files_written = n_tickers
    messy_files: list[str] = []
    if messy:
        entries, messy_files, m_bars, m_bytes = _write_messy(
            out_dir, pool[n_tickers:], seed, end_date, t_days, next_bucket, model
        )
        _dump_json(truth_dir / "defects.json", entries)
        files_written += len(messy_files)
        n_bars += m_bars
        n_bytes += m_bytes

    regimes = [
        {
            "id": k,
            "name": REGIME_NAMES[k],
            "drift_sigma_mult": float(DRIFT_SIGMA_MULT[k]),
            "vol_mult": float(VOL_MULT[k]),
            "volume_mult": float(VOLUME_MULT[k]),
            "clv_beta": [float(CLV_BETA_A[k]), float(CLV_BETA_B[k])],
            "clv_mean": float(CLV_BETA_A[k] / (CLV_BETA_A[k] + CLV_BETA_B[k])),
            "dwell_mean_bars": float(DWELL_MEAN[k]),
        }
        for k in range(K_REGIMES)
    ]
    transitions: dict[str, Any] | None = {
        "dwell_scale_range": list(DWELL_SCALE),
        "jump_step_probs": {str(s): float(q) for s, q in zip(JUMP_STEPS, JUMP_PROBS, strict=True)},
        "definition": (
            "P[i,i] = 1 - 1/dwell_i; P[i,(i+s)%4] = q_s/dwell_i with per-ticker "
            "dwell_i in tickers.parquet; initial state ~ dwell-weighted stationary"
        ),
    }
    extra: dict[str, Any] = {}
    if null:  # the key is absent otherwise, so the planted universe's truth is unchanged
        regimes = [
            {
                "id": 0,
                "name": NULL_REGIME_NAME,
                "drift_sigma_mult": 0.0,
                "vol_mult": 1.0,
                "volume_mult": 1.0,
                "clv_beta": [NULL_CLV_BETA, NULL_CLV_BETA],
                "clv_mean": 0.5,
                "dwell_mean_bars": None,
            }
        ]
        transitions = None
        extra = {
            "null": True,
            "null_definition": (
                "one regime: driftless log-price random walk with iid Student-t(5) shocks at "
                "each ticker's constant sigma, one volume level, close location ~ Beta(3, 3); "
                "the dwell_* columns of tickers.parquet drive nothing"
            ),
        }
    _dump_json(
        truth_dir / "universe.json",
        {
            "generator": "mf_pipeline.lib.sample",
            "seed": seed,
            "n_tickers": n_tickers,
            "years": years,
            "end_date": str(days[-1]),
            "start_date": str(days[0]),
            "business_days": t_days,
            "messy": messy,
            "files_written": files_written,
            "bars_written": n_bars,
            "bytes_written": n_bytes,
            "raw_root": "/".join(RAW_SUBDIR),
            "exchanges": {ex: int((exchange == ex).sum()) for ex in EXCHANGE_DIRS},
            "regimes": regimes,
            "transitions": transitions,
            "truth_files": {
                "regimes": "regimes.parquet (ticker, trade_date, regime) for clean files only",
                "tickers": "tickers.parquet (per-ticker parameters)",
                "defects": "defects.json" if messy else None,
            },
            "messy_files": messy_files,
            "defect_side_effects": {k: list(v) for k, v in DEFECT_SIDE_EFFECTS.items()},
            **extra,
        },
    )
    return SampleReport(
        out_dir=out_dir,
        tickers=n_tickers,
        files_written=files_written,
        bars_written=n_bars,
        bytes_written=n_bytes,
        truth_dir=truth_dir,
    )
