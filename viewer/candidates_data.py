"""Reads of the production candidates (issue #22, spec §12) for the chart's candidate layers.

Where the data comes from, newest first by the RECORDED ``finished_ts`` (never mtime):

- the pack: ``<artifacts_root>/production_candidates/pcp-*/`` (its
  ``production_candidates_summary.json``), the packet naming each locked candidate;
- the nightly re-run of that pack: ``<artifacts_root>/candidate_reruns/crp-*/`` (its
  ``rerun_summary.json`` or ``rerun_manifest.json``; the manifest's ``pcp_pack_dir`` must be
  the pack shown). Each ``candidates/<LABEL>/backtest_run_dir.txt`` names the backtest the
  re-run made, ``drift_metrics.json`` its drift status. Without a re-run of the pack, the
  pack's lock-time backtest (the packet's ``backtest_run_dir``) gives the trades.

The layers (registry entries ``candidate_*``) are one frame each, one row per date of the
shown ticker, so several candidates' marks on one date share a row (their labels joined).
Trades and drift statuses are read from those folders. The per-bar policy classes and
execution gates are the re-run's own rows for the shown ticker, rebuilt by the library (the
locked decode of that ticker, then ``run.prepare`` with the re-run's options) since the
re-run does not store its rows; nothing is re-implemented here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import registry as lake_registry
from mf_pipeline.lib.candidates import pack as pcp
from mf_pipeline.lib.candidates import rerun as crp
from mf_pipeline.lib.reports.discover import find_newest, newest
from mf_pipeline.lib.settings import Settings
from viewer.data import FileRef, Reader, optional_file, read, read_parquet_columns

RUN_DIR_FILE, DRIFT_FILE = "backtest_run_dir.txt", "drift_metrics.json"  # rerun._write's
TRADES = "trades.parquet"
JOINED_ROWS = "normalized_rows_with_policy.parquet"  # a backtest's per-row frame, when exported
POLICY_FILE = "cluster_hardening_policy.json"
LOCK_FILE = "lock.json"  # a locked candidate's description (its policy_file, cluster_run_dir)
CLUSTERED = "clustered_dataset_full.parquet"  # a clustering run's ids of its rows
DRIFT_STATUSES = ("OK", "DRIFT_WARN", "DRIFT_FAIL", "ERROR")
POLICY_CLASSES = ("ALLOW", "WATCH", "BLOCK")
TRADE_COLUMNS = ("ticker", "side", "entry_date", "entry_price", "exit_date", "exit_price",
                 "exit_reason", "net_return", "hold_bars_realized", "entry_state_id",
                 "is_valid_trade")  # fmt: skip
ROW_COLUMNS = ("trade_date", "cluster_id", "overlay_policy_class", "state_class",
               "execution_candidate_after", "execution_suppressed_signal",
               "execution_filter_reason")  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """One locked candidate as the viewer shows it."""

    label: str
    packet: dict[str, Any]  # its packet object ({} when only the re-run names it)
    run_dir: Path | None  # the backtest whose trades are marked
    origin: str  # "re-run <id> (as of …)" or "lock-time backtest"
    drift_status: str | None = None  # of the latest re-run; None without one
    drift_flags: tuple[str, ...] = ()
    locked_dir: Path | None = None

    @property
    def exec_profile(self) -> str:
        strategy = self.packet.get("strategy") or {}
        realism = self.packet.get("execution_realism") or {}
        return str(strategy.get("exec_profile") or realism.get("profile") or "none")

    @property
    def overlay_mode(self) -> str:
        strategy = self.packet.get("strategy") or {}
        overlay = self.packet.get("overlay") or {}
        return str(strategy.get("overlay_mode") or overlay.get("mode") or "none")

    @property
    def source_type(self) -> str:
        return str(self.packet.get("source_type") or self.packet.get("input_type") or "hmm")


@dataclass(frozen=True)
class CandidateSet:
    """The pack and re-run shown, their candidates by label, and what is missing."""

    pack_dir: Path | None = None
    rerun_dir: Path | None = None
    rerun: dict[str, Any] = field(default_factory=dict)  # manifest + summary keys
    candidates: dict[str, Candidate] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def as_of(self) -> str | None:
        tag = self.rerun.get("as_of_tag") or self.rerun.get("as_of")
        return None if tag in (None, "none") else str(tag)


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _recorded(root: Path, pattern: str, names: tuple[str, ...]
              ) -> list[tuple[Path, dict[str, Any]]]:  # fmt: skip
    """Folders under ``root`` matching ``pattern`` with their first readable summary among
    ``names`` merged over the others (so ``finished_ts`` is found in either)."""
    found = []
    for folder in sorted(root.glob(pattern)) if root.is_dir() else []:
        merged: dict[str, Any] = {}
        for name in reversed(names):
            merged |= _json(folder / name) or {}
        if merged:
            found.append((folder, merged))
    return found


def latest_pack(settings: Settings) -> Path | None:
    """The newest pack by its summary's ``finished_ts``."""
    return find_newest(settings.artifacts_root / pcp.PACKS_DIR, f"pcp-*_{pcp.PCP_VERSION}",
                       pcp.SUMMARY)


def latest_rerun(settings: Settings, pack_dir: Path | None
                 ) -> tuple[Path | None, dict[str, Any]]:  # fmt: skip
    """The newest re-run (by ``finished_ts``) of ``pack_dir`` (of any pack when None), and
    its manifest merged with its summary."""
    runs = _recorded(settings.artifacts_root / crp.RERUNS_DIR, f"crp-*_{crp.CRP_VERSION}",
                     (crp.RERUN_SUMMARY, crp.MANIFEST))
    if pack_dir is not None:
        runs = [(f, s) for f, s in runs if _same(s.get("pcp_pack_dir"), pack_dir)]
    folder = newest(runs)
    return folder, next((s for f, s in runs if f == folder), {})


def _same(recorded: Any, folder: Path) -> bool:
    if not recorded:
        return False
    path = Path(str(recorded))
    return path == folder or path.name == folder.name


def _text_path(path: Path) -> Path | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None


def _under(base: Path, value: Any) -> Path | None:
    """A recorded path, relative ones resolved against ``base``."""
    if not value:
        return None
    path = Path(str(value))
    return path if path.is_absolute() else base / path


def _rerun_candidate(folder: Path, manifest: Mapping[str, Any], label: str
                     ) -> tuple[Path | None, str | None, tuple[str, ...]]:  # fmt: skip
    """The re-run's backtest folder, drift status and flags of ``label``."""
    row = next((c for c in manifest.get("candidates") or []
                if c.get("candidate_label") == label), {})
    cdir = folder / "candidates" / label
    run_dir = _text_path(cdir / RUN_DIR_FILE) or _under(folder, row.get("backtest_run_dir"))
    drift = _json(cdir / DRIFT_FILE) or {}
    status = drift.get("drift_status") or row.get("drift_status")
    return run_dir, status, tuple(drift.get("drift_flags") or row.get("drift_flags") or [])


def load_candidates(settings: Settings) -> CandidateSet:
    """The latest pack's candidates with their latest re-run (see the module doc)."""
    pack_dir = latest_pack(settings)
    packet = (_json(pack_dir / pcp.PACKET) or {}) if pack_dir else {}
    objects: dict[str, dict[str, Any]] = packet.get("candidates") or {}
    rerun_dir, rerun = latest_rerun(settings, pack_dir)
    notes: list[str] = []
    if pack_dir is None:
        notes.append(f"no production candidate pack under "
                     f"`{settings.artifacts_root / pcp.PACKS_DIR}` "
                     "(`mf production-candidates-build`)")
    if rerun_dir is None:
        notes.append("no nightly re-run" + (f" of `{pack_dir.name}`" if pack_dir else "")
                     + f" under `{settings.artifacts_root / crp.RERUNS_DIR}`: lock-time trades")
    labels = sorted(set(objects) | {c.get("candidate_label") for c in
                                    rerun.get("candidates") or [] if c.get("candidate_label")})
    out: dict[str, Candidate] = {}
    for label in labels:
        obj = objects.get(label) or {}
        locked = _under(pack_dir, obj.get("locked_dir")) if pack_dir else None
        if rerun_dir is not None:
            run_dir, status, flags = _rerun_candidate(rerun_dir, rerun, label)
            as_of = rerun.get("as_of_tag") or "?"
            origin = f"re-run `{rerun_dir.name}` (as of {as_of})"
        else:
            run_dir = _under(pack_dir, obj.get("backtest_run_dir")) if pack_dir else None
            status, flags, origin = None, (), "lock-time backtest"
        out[label] = Candidate(label, obj, run_dir, origin, status, flags, locked)
    return CandidateSet(pack_dir, rerun_dir, rerun, out, tuple(notes))


def candidate_trades(candidate: Candidate, ticker: str,
                     reader: Reader = read_parquet_columns) -> pl.DataFrame | None:
    """``candidate``'s trades of ``ticker`` (None: its backtest has no trades file)."""
    path = candidate.run_dir / TRADES if candidate.run_dir else None
    if path is None or not path.is_file():
        return None
    return read(reader, FileRef.of(path), TRADE_COLUMNS, ticker)


def candidate_rows(candidate: Candidate, ticker: str,
                   reader: Reader = read_parquet_columns) -> pl.DataFrame | None:
    """The per-row frame ``candidate``'s backtest traded (policy class, execution gates),
    ``ticker``'s rows; None when the backtest did not export it."""
    path = candidate.run_dir / JOINED_ROWS if candidate.run_dir else None
    if path is None or not path.is_file():
        return None
    return read(reader, FileRef.of(path), ROW_COLUMNS, ticker)


_LOCKED_ROWS: dict[tuple[Any, ...], pl.DataFrame | None] = {}
LOCKED_ROWS_KEPT = 32


def locked_rows(settings: Settings, found: CandidateSet, candidate: Candidate, ticker: str
                ) -> pl.DataFrame | None:  # fmt: skip
    """``ticker``'s rows as the candidate's re-run saw them, rebuilt for this ticker alone:
    the LOCKED models decode its bars up to the re-run's as-of date (``locked.locked_inputs``;
    each ticker decodes on its own) and the re-run's options prepare them
    (``run.prepare``: state classes, overlay, execution gates, signals). None without a lock.
    Kept per (lock, as-of, ticker, dataset file) for the page's re-renders."""
    from mf_pipeline.lib.candidates import locked
    from mf_pipeline.lib.steps.backtest.run import prepare
    from mf_pipeline.lib.steps.research.prepare import resolve_dataset

    lock = candidate.locked_dir / LOCK_FILE if candidate.locked_dir else None
    if lock is None or not lock.is_file():
        return None
    as_of = dt.date.fromisoformat(found.as_of) if found.as_of else None
    dataset = FileRef.of(resolve_dataset(settings, None))
    key = (str(lock), lock.stat().st_mtime_ns, as_of, ticker, dataset)
    if key not in _LOCKED_ROWS:
        overlay = bool((candidate.packet.get("overlay") or {}).get("enabled"))
        inputs = locked.locked_inputs(settings, candidate.locked_dir, candidate.source_type,
                                      as_of, overlay, "viewer", tickers=[ticker])
        night = crp.RerunOptions(overlay_coverage_mode="warn_only", overlay_coverage_bypass=True)
        rows = None
        if inputs.rows.height:
            signals = prepare(settings, inputs, crp.rerun_options(settings, candidate.packet,
                                                                  night)).signals
            rows = signals.select([c for c in ROW_COLUMNS if c in signals.columns])
            if "cluster_id" not in rows.columns:  # the locked clustering's id of each bar
                rows = rows.join(inputs.rows.select(pl.col("trade_date").cast(pl.Date),
                                                    "cluster_id"),
                                 on="trade_date", how="left", maintain_order="left")
        while len(_LOCKED_ROWS) >= LOCKED_ROWS_KEPT:
            _LOCKED_ROWS.pop(next(iter(_LOCKED_ROWS)))
        _LOCKED_ROWS[key] = rows
    return _LOCKED_ROWS[key]


def candidate_frame(settings: Settings, found: CandidateSet, candidate: Candidate,
                    ticker: str, reader: Reader) -> tuple[pl.DataFrame | None, str]:
    """``ticker``'s per-row frame of ``candidate`` and where it comes from: its backtest's
    exported rows, else :func:`locked_rows`; (None, why) when neither exists or fails."""
    rows = candidate_rows(candidate, ticker, reader)
    if rows is not None:
        return rows, f"the rows {candidate.label}'s backtest exported"
    try:
        rows = locked_rows(settings, found, candidate, ticker)
    except Exception as error:  # named on the switch; the page stays usable
        return None, f"{candidate.label}: locked decode failed: {type(error).__name__}: {error}"
    if rows is None:
        return None, f"{candidate.label}: no locked model of {ticker} (no lock, or the ticker " \
            "is outside the locked universe)"
    as_of = found.as_of or "the lake's last date"
    return rows, f"{candidate.label}'s locked models re-run on {ticker} as of {as_of}"


# ---------------------------------------------------------------- pure transforms


def _pct(expr: pl.Expr) -> pl.Expr:
    return pl.format("{}%", (expr * 100).round(2))


def trade_marks(trades: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per date with the entries and exits of every candidate's trades
    (``{label: trades}``): ``cand_long_entry``/``cand_short_entry`` (entry price),
    ``cand_exit`` (exit price) and their ``*_text`` (labels and details, ``; ``-joined in
    label order). A date's price is its first candidate's (fills of one date differ at
    most by the candidates' slippage)."""
    entries, exits = [], []
    for label, frame in sorted(trades.items()):
        valid = frame.filter(pl.col("is_valid_trade").fill_null(True)) \
            if "is_valid_trade" in frame.columns else frame  # fmt: skip
        entries.append(valid.select(
            pl.col("entry_date").cast(pl.Date).alias("trade_date"), "side",
            pl.col("entry_price").cast(pl.Float64).alias("price"),
            pl.format("{} {} (state {})", pl.lit(label), "side",
                      pl.col("entry_state_id").cast(pl.String).fill_null("?")).alias("text")))
        exits.append(valid.select(
            pl.col("exit_date").cast(pl.Date).alias("trade_date"),
            pl.col("exit_price").cast(pl.Float64).alias("price"),
            pl.format("{} {}: {}, net {}, {} bars", pl.lit(label), "side", "exit_reason",
                      _pct(pl.col("net_return").cast(pl.Float64)),
                      "hold_bars_realized").alias("text")))
    schema = {"trade_date": pl.Date}
    if not entries:
        return pl.DataFrame(schema=schema)
    entry = pl.concat(entries)
    parts = [pl.concat(exits).group_by("trade_date", maintain_order=True).agg(
        pl.col("price").first().alias("cand_exit"), pl.col("text").str.join("; ")
        .alias("cand_exit_text"))]
    for side in ("LONG", "SHORT"):
        name = f"cand_{side.lower()}_entry"
        parts.append(entry.filter(pl.col("side") == side)
                     .group_by("trade_date", maintain_order=True)
                     .agg(pl.col("price").first().alias(name),
                          pl.col("text").str.join("; ").alias(f"{name}_text")))
    dates = pl.concat([p.select("trade_date") for p in parts]).unique().sort("trade_date")
    for part in parts:
        dates = dates.join(part, on="trade_date", how="left")
    return dates


def policy_table(policy: Mapping[str, Any]) -> dict[int, str]:
    """``{state_id: ALLOW/WATCH/BLOCK}`` of a ``cluster_hardening_policy.json`` payload."""
    out: dict[int, str] = {}
    for entry in policy.get("per_state") or []:
        try:
            out[int(entry["state_id"])] = str(entry.get("class_label") or "BLOCK").upper()
        except (KeyError, TypeError, ValueError):
            continue
    return out


def policy_classes(cluster_ids: pl.Series, classes: Mapping[int, str]) -> pl.Series:
    """The class of every cluster id under the policy ``classes``: ``UNKNOWN`` for an id the
    policy does not list, null where there is no id (a bar the clustering did not label)."""
    ids = cluster_ids.fill_nan(None) if cluster_ids.dtype.is_float() else cluster_ids
    ids = ids.cast(pl.Int64, strict=False)
    named = ids.replace_strict(dict(classes), default="UNKNOWN", return_dtype=pl.String)
    return pl.select(pl.when(ids.is_not_null()).then(named)).to_series().alias("class")


def exec_marks(rows: pl.DataFrame) -> pl.DataFrame:
    """The execution gates of a backtest's rows: ``cand_exec_pass`` (a signal the filter
    kept), ``cand_exec_blocked`` (one it suppressed) and ``cand_exec_reason``."""
    flag = [pl.col(c).cast(pl.Boolean).fill_null(False) for c in
            ("execution_candidate_after", "execution_suppressed_signal")]
    return rows.select(
        pl.col("trade_date").cast(pl.Date),
        flag[0].alias("cand_exec_pass"), flag[1].alias("cand_exec_blocked"),
        pl.when(flag[1]).then(pl.col("execution_filter_reason").cast(pl.String))
        .alias("cand_exec_reason"))


# ---------------------------------------------------------------- the registry's loaders


def _no(why: str) -> tuple[None, str]:
    return None, why


def trades_layer(settings: Settings, ticker: str, reader: Reader
                 ) -> tuple[pl.DataFrame | None, str | None]:  # fmt: skip
    """The ``candidate_trades`` layer: every candidate's trades of ``ticker``."""
    found = load_candidates(settings)
    if not found.candidates:
        return _no("; ".join(found.notes) or "no candidate")
    trades = {label: t for label, c in found.candidates.items()
              if (t := candidate_trades(c, ticker, reader)) is not None}
    if not trades:
        return _no("no candidate backtest has a trades file: "
                   + ", ".join(f"{c.label}: {c.run_dir}" for c in found.candidates.values()))
    marks = trade_marks(trades)
    if marks.is_empty():
        return _no(f"no candidate traded {ticker} ({', '.join(sorted(trades))})")
    return marks, None


def exec_candidate(found: CandidateSet) -> Candidate | None:
    """The candidate whose execution gates are drawn: the first label with a profile."""
    return next((c for _, c in sorted(found.candidates.items())
                 if c.exec_profile != "none"), None)


def execution_layer(settings: Settings, ticker: str, reader: Reader
                    ) -> tuple[pl.DataFrame | None, str | None]:  # fmt: skip
    """The ``candidate_execution`` layer: the execution candidate's per-row gates."""
    found = load_candidates(settings)
    chosen = exec_candidate(found)
    if chosen is None:
        return _no("; ".join(found.notes) or "no candidate with an execution profile")
    rows, why = candidate_frame(settings, found, chosen, ticker, reader)
    if rows is None or "execution_suppressed_signal" not in rows.columns:
        return _no(why)
    return exec_marks(rows), None


def _cluster_ids(settings: Settings, ticker: str, reader: Reader, run_dir: Path | None
                 ) -> pl.DataFrame | None:  # fmt: skip
    """``trade_date, cluster_label`` of ``ticker``: the ids the locked clustering run gave
    its rows (``run_dir``), else the cluster labels layer (the ``full`` split's run)."""
    clustered = run_dir / CLUSTERED if run_dir else None
    if clustered is not None and clustered.is_file():
        part = read(reader, FileRef.of(clustered), ("trade_date", "cluster_id"), ticker)
        part = part.rename({"cluster_id": "cluster_label"}, strict=False)
    else:
        ref = optional_file(lake_registry.state_band_root(settings, "cluster"), ticker)
        if ref is None:
            return None
        part = read(reader, ref, ("trade_date", "cluster_label"), ticker)
    return part if "cluster_label" in part.columns and part.height else None


def _lock(c: Candidate) -> dict[str, Any]:
    return (_json(c.locked_dir / LOCK_FILE) or {}) if c.locked_dir else {}


def policy_source(settings: Settings, found: CandidateSet
                  ) -> tuple[dict[int, str] | None, str, Path | None, Candidate | None]:
    """The policy the band paints, what it is, the clustering run whose ids it applies to,
    and the candidate that locked it: the first candidate's locked cluster policy (its
    lock's ``policy_file``; ids from its locked decode, else its locked clustering run),
    else the ``full`` split's recorded ``state_policy_cluster`` on the cluster labels."""
    for label, c in sorted(found.candidates.items()):
        lock = _lock(c)
        path = _under(c.locked_dir, lock.get("policy_file")) if c.locked_dir else None
        if path is not None and path.is_file() and (payload := _json(path)):
            run = _under(c.locked_dir, lock.get("cluster_run_dir"))
            return policy_table(payload), f"locked policy of {label} (`{path}`)", run, c
    from viewer.validation_data import load_run

    run, why = load_run(settings, "cluster")
    if run is None or run.policy_dir is None:
        return None, why or "no recorded cluster policy", None, None
    payload = _json(run.policy_dir / POLICY_FILE) or {}
    return (policy_table(payload), f"split `{run.split}` state_policy_cluster (in-sample)",
            None, None)


def _row_policy(found: CandidateSet) -> tuple[Candidate, str] | None:
    """The first candidate that classes bars itself (its locked overlay policy, or a cluster
    source's policy), and the column holding that class: the overlay's, else the state's."""
    for _, c in sorted(found.candidates.items()):
        column = ("overlay_policy_class" if c.overlay_mode != "none" else
                  "state_class" if c.source_type == "cluster" else None)
        if column:
            return c, column
    return None


def band_origin(settings: Settings, found: CandidateSet) -> str:
    """What the ``candidate_policy`` band paints, as the page says it."""
    row = _row_policy(found)
    if row is not None:
        return f"the class {row[0].label}'s locked policy gives each bar (`{row[1]}`)"
    return policy_source(settings, found)[1]


def policy_layer(settings: Settings, ticker: str, reader: Reader
                 ) -> tuple[pl.DataFrame | None, str | None]:  # fmt: skip
    """The ``candidate_policy`` layer: ALLOW/WATCH/BLOCK of every bar of ``ticker``.

    The class a candidate's locked policy gives each row (:func:`_row_policy`, rows of
    :func:`candidate_frame`), else the policy of :func:`policy_source` looked up by the
    bar's cluster id."""
    found = load_candidates(settings)
    row = _row_policy(found)
    rows = candidate_frame(settings, found, row[0], ticker, reader)[0] if row else None
    if row is not None and rows is not None and row[1] in rows.columns:
        return rows.select(pl.col("trade_date").cast(pl.Date),
                           pl.col(row[1]).cast(pl.String).str.to_uppercase()
                           .alias("candidate_policy_class")), None
    classes, what, run_dir, owner = policy_source(settings, found)
    if classes is None:
        return _no(what)
    ids = None
    if owner is not None:  # the locked clustering's ids of every bar, new ones included
        rows = candidate_frame(settings, found, owner, ticker, reader)[0]
        if rows is not None and "cluster_id" in rows.columns:
            ids = rows.select("trade_date", pl.col("cluster_id").alias("cluster_label"))
    if ids is None:
        ids = _cluster_ids(settings, ticker, reader, run_dir)
    if ids is None:
        return _no(f"no cluster labels of {ticker} to apply the {what} to")
    return ids.select(pl.col("trade_date").cast(pl.Date),
                      policy_classes(ids["cluster_label"], classes)
                      .alias("candidate_policy_class")), None
