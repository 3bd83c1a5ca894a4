"""Manifest and Bronze steps: read the raw tree and the lake, compute, write. Dagster-free.

The Dagster assets, the CLI and the tests all call these functions, so there is one code path.
Shared tables of the Bronze root:

* ``manifests/file_manifest_current.parquet`` — the last classification (all files, DELETED too);
* ``manifests/file_manifest.parquet`` — the stable manifest: per file, the fingerprint last
  ingested successfully (failed files are never promoted);
* ``file_ledger.parquet`` — one row per raw file: how every line was accounted for;
* ``quality/rejects.parquet`` — every rejected line and invalid row, with line and reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mf_pipeline.lib import lake, lake_table, recent_writes
from mf_pipeline.lib.layers import manifest as mf
from mf_pipeline.lib.layers.bronze.append import AppendResult, build_bronze_append
from mf_pipeline.lib.layers.bronze.build import (
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    BronzeResult,
    build_bronze,
)
from mf_pipeline.lib.layers.bronze.ledger import LEDGER_SCHEMA
from mf_pipeline.lib.layers.bronze.validate import ValidationThresholds
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps import calc_settings

Log = Callable[[str], None]
RETRIED_REASON = "read_error"


@dataclass(frozen=True)
class BronzePaths:
    root: Path

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def current_manifest(self) -> Path:
        return self.manifests / "file_manifest_current.parquet"

    @property
    def stable_manifest(self) -> Path:
        return self.manifests / "file_manifest.parquet"

    @property
    def ledger(self) -> Path:
        return self.root / "file_ledger.parquet"

    @property
    def rejects(self) -> Path:
        return self.root / "quality" / "rejects.parquet"

    @property
    def data(self) -> Path:
        return self.root / "ohlcv_by_symbol"


def paths(settings: Settings) -> BronzePaths:
    return BronzePaths(settings.bronze_root)


def _read_or_empty(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.exists() else mf.empty_manifest()


def ensure_raw_root(settings: Settings, log: Log = print) -> Path:
    """The raw root; generates the embedded sample universe when none is configured, and
    regenerates it in place when ``sample.null`` was switched (the files then change content,
    so the incremental layers rebuild every ticker)."""
    root = settings.raw_root
    cfg = settings.sample
    if settings.uses_sample and (not root.exists() or _null_switched(root, cfg.null)):
        from mf_pipeline.lib.sample import generate_universe

        kind = "null sample universe" if cfg.null else "sample universe"
        log(f"no raw_root configured: generating the {kind} in {root}")
        generate_universe(root, n_tickers=cfg.tickers, years=cfg.years, seed=cfg.seed,
                          messy=cfg.messy, null=cfg.null)
    elif not root.is_dir():
        raise FileNotFoundError(
            f"raw_root {root} does not exist (set paths.raw_root or MF_PIPELINE_PATHS__RAW_ROOT)"
        )
    return root


def _null_switched(root: Path, null: bool) -> bool:
    from mf_pipeline.lib.sample import generated_null_flag

    found = generated_null_flag(root)
    return found is not None and found != null


@dataclass
class ManifestOutcome:
    classified: pl.DataFrame
    status_counts: dict[str, int]
    exchange_counts: dict[str, int]
    tickers: list[str]  # every valid ticker present now (partition keys)
    to_process: list[str]  # tickers with NEW/CHANGED/APPENDED/DELETED files
    deleted_tickers: list[str]
    failed_files: list[dict[str, str]]  # files that cannot become a partition
    seconds: float = 0.0


PLAN_KEPT_SECONDS = 60.0
_PLANNED: dict[str, tuple[float, tuple[int, int] | None, pl.DataFrame]] = {}
"""The classification ``mf run`` planned with, handed to the ``manifest`` asset of the run it
launches in the same process (taken once): the run works on the tree its plan saw, and the
raw tree is not walked and classified twice."""


def _stable_key(settings: Settings) -> tuple[int, int] | None:
    try:
        stat = paths(settings).stable_manifest.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def take_planned(settings: Settings) -> pl.DataFrame | None:
    """The classification planned moments ago in this process for this lake, if the stable
    manifest is unchanged since (None otherwise: classify again)."""
    kept = _PLANNED.pop(str(settings.raw_root), None)
    if kept is None or time.monotonic() - kept[0] > PLAN_KEPT_SECONDS \
            or kept[1] != _stable_key(settings):
        return None
    return kept[2]


def classify_raw(settings: Settings, log: Log = print, for_run: bool = False) -> pl.DataFrame:
    """Discover, fingerprint and classify the raw tree against the stable manifest (no writes).
    ``for_run``: keep the result for the ``manifest`` asset of the run about to start."""
    root = ensure_raw_root(settings, log)
    stable_key = _stable_key(settings)
    stable = _read_or_empty(paths(settings).stable_manifest)
    sizes = dict(zip(stable["path"].to_list(), stable["file_size_bytes"].to_list(), strict=True))
    ingest = settings.ingest
    current = mf.discover(root, prefixes=sizes, follow_symlinks=ingest.follow_symlinks,
                          max_file_bytes=ingest.max_file_bytes,
                          known=mf.trusted_hashes(stable))
    classified = mf.classify(current, stable)
    if for_run:
        _PLANNED[str(settings.raw_root)] = (time.monotonic(), stable_key, classified)
    return classified


def run_manifest(settings: Settings, run_id: str, log: Log = print) -> ManifestOutcome:
    """Classify the raw tree, write the current manifest, and account for unnamed files.

    Files whose name is not a valid ticker cannot be a partition; their lines are recorded here
    as rejected (``invalid_file_ticker``) so the ledger still covers every raw file. Files
    failed on the tree alone (``mf.NOT_READ_REASONS``: a symlink not followed, a path that is
    not UTF-8, a file over ``ingest.max_file_bytes``) get a FAILED ledger row without being
    read.
    """
    started = time.perf_counter()
    classified = take_planned(settings)
    if classified is None:
        classified = classify_raw(settings, log)
    bronze = paths(settings)
    lake.write_parquet(classified.drop("prev_size"), bronze.current_manifest, settings.parquet)
    present = classified.filter(pl.col("manifest_status") != mf.DELETED)
    unnamed = present.filter(
        pl.col("ticker").is_null() & pl.col("manifest_status").is_in(mf.TO_PROCESS)
    )
    if not unnamed.is_empty():
        result = build_bronze(_bronze_input(unnamed), _thresholds(settings), run_id,
                              dt.datetime.now(dt.UTC), settings.ingest.max_line_bytes)
        _store_accounting(settings, result, unnamed["source_file"].to_list())
        _promote(settings, classified, result.ledger, [])
    tickers = sorted(set(present["ticker"].drop_nulls().to_list()))
    present_tickers = set(tickers)
    deleted = classified.filter(pl.col("manifest_status") == mf.DELETED)
    failed = present.filter(pl.col("fail_reason").is_not_null())
    return ManifestOutcome(
        classified=classified,
        status_counts=mf.status_counts(classified),
        exchange_counts=mf.exchange_counts(classified),
        tickers=tickers,
        to_process=mf.tickers_to_process(classified),
        deleted_tickers=sorted(set(deleted["ticker"].drop_nulls()) - present_tickers),
        failed_files=failed.select("source_file", "fail_reason").to_dicts(),
        seconds=time.perf_counter() - started,
    )


def _thresholds(settings: Settings) -> ValidationThresholds:
    v = settings.validation
    return ValidationThresholds(
        suspicious_range_pct=v.suspicious_range_pct_threshold,
        suspicious_return_pct=v.suspicious_return_pct_threshold,
        gap_days_warn=v.gap_days_warn_threshold,
    )


def _bronze_input(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select("source_file", "path", "ticker", "exchange", "fail_reason")


def _store_accounting(settings: Settings, result: BronzeResult, source_files: Sequence[str],
                      ) -> None:
    """Replace the ledger and rejects rows of ``source_files`` (locked, atomic)."""
    bronze = paths(settings)
    lake.upsert_parquet(bronze.ledger, result.ledger, "source_file", source_files,
                        settings.parquet, sort_by=["source_file"])
    lake.upsert_parquet(bronze.rejects, result.rejects, "source_file", source_files,
                        settings.parquet, sort_by=["source_file", "line_no"])


def _promote(settings: Settings, classified: pl.DataFrame, ledger: pl.DataFrame,
             retired: Sequence[str]) -> None:
    """Record ingested files in the stable manifest.

    A file that could not be read is retried next run. Other failures (a name that is not a
    ticker, two files claiming one ticker) are facts about the raw tree, so they are recorded;
    any later change to a file of that ticker reprocesses the whole ticker anyway.
    """
    done = ledger.filter(~pl.col("reasons").str.contains(RETRIED_REASON))["source_file"]
    stable_path = paths(settings).stable_manifest
    with lake.file_lock(stable_path):
        stable = _read_or_empty(stable_path)
        promoted = mf.promote(stable, classified, done.to_list(), retired)
        lake.write_parquet(promoted, stable_path, settings.parquet)


@dataclass
class BronzeOutcome:
    run_id: str
    tickers_requested: int
    files_processed: int
    files_failed: int
    files_empty: int
    rows_valid: int
    rows_invalid: int
    rows_rejected: int
    tickers_written: list[str] = field(default_factory=list)
    tickers_retired: list[str] = field(default_factory=list)
    ledger: pl.DataFrame = field(default_factory=pl.DataFrame)
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    appended_rows: dict[str, int] = field(default_factory=dict)
    """``{ticker: valid rows of its new lines}`` of the tickers whose new lines alone were
    parsed (append path)."""


DEFAULT_BATCH_BYTES = 256 * 2**20
"""Raw bytes parsed together at most: about 1.5 GB of peak memory per batch."""
PIPELINE_BATCHES = 4
"""A smaller run is still split into this many batches (of at least ``MIN_BATCH_BYTES``), so
one batch's files are written while the next is parsed."""
MIN_BATCH_BYTES = 8 * 2**20


def pending_tickers(settings: Settings) -> list[str]:
    """Tickers the current manifest says need Bronze (changed, new, appended or deleted);
    every ticker when the validation thresholds changed since Bronze was built."""
    current = paths(settings).current_manifest
    if not current.exists():
        return []
    full = calc_settings.changes(settings, "bronze") is not None
    classified = pl.read_parquet(current)
    return sorted({*mf.tickers_to_process(classified, full=full),
                   *orphan_tickers(settings, classified)})


def orphan_tickers(settings: Settings, classified: pl.DataFrame) -> list[str]:
    """Tickers with Bronze files but no raw file that names them any more, although no file
    was classified DELETED (e.g. the stable manifest was lost together with a raw file): they
    are retired like deleted ones, so no layer keeps a ticker without a source."""
    present = set(classified.filter(pl.col("manifest_status") != mf.DELETED)["ticker"]
                  .drop_nulls().to_list())
    return sorted(set(lake.symbol_tickers(paths(settings).data)) - present)


def byte_batches(files: pl.DataFrame, budget: int) -> list[pl.DataFrame]:
    """Split ``files`` into batches of about ``budget`` raw bytes, never splitting a ticker
    (two files claiming one ticker must meet in one batch to be caught), in shard order (a
    batch writes whole shards, and a shard few files)."""
    sizes = files.group_by("ticker").agg(pl.col("file_size_bytes").sum())
    sizes = (sizes.with_columns(lake_table.shard_series(sizes["ticker"])).sort("shard", "ticker")
             .with_columns(batch=(pl.col("file_size_bytes").cum_sum() - 1) // max(budget, 1)))
    tagged = files.join(sizes.select("ticker", "batch"), on="ticker").sort("batch", "source_file")
    return [part.drop("batch") for part in tagged.partition_by("batch", maintain_order=True)]


@dataclass
class _Requested:
    """The current manifest and the rows of the tickers a Bronze run was asked for."""

    classified: pl.DataFrame
    present: pl.DataFrame  # files of those tickers that exist now
    gone: pl.DataFrame  # their DELETED files


@dataclass
class _BronzeRun:
    """What the stages of one ``run_bronze`` share: its settings, clock and written files."""

    settings: Settings
    run_id: str
    log: Log
    started: float
    built_ts: dt.datetime
    compute_seconds: float = 0.0
    written: dict[str, str] = field(default_factory=dict)  # {ticker: listing} committed

    @property
    def metadata(self) -> dict[str, str]:
        return {"schema_version": SCHEMA_VERSION, "run_id": self.run_id}


def run_bronze(
    settings: Settings,
    tickers: Sequence[str],
    run_id: str,
    promote_manifest: bool = True,
    log: Log = print,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> BronzeOutcome:
    """Rebuild Bronze for ``tickers`` from their current raw files.

    Tickers whose files only grew (``APPENDED``) take the append path: only the new lines are
    parsed, validated and written as a delta file (exactly what a full rebuild gives; anything
    doubtful falls back). The others are parsed in batches of at most ``batch_bytes`` (bounded
    memory on any universe); the files of one batch are written while the next batch is
    parsed. A ticker with no present file (deleted source) has its Bronze file removed. A
    ticker whose files all failed (e.g. two sources claim it) gets no Bronze file rather than
    a wrong one.
    """
    requested = _requested(settings, tickers)
    run = _BronzeRun(settings, run_id, log, started=time.perf_counter(),
                     built_ts=dt.datetime.now(dt.UTC))
    appended, extended, old_ledger = _run_append_path(run, requested.present)
    full = requested.present.filter(~pl.col("ticker").is_in(extended))
    results = _run_full_path(run, full, batch_bytes)
    retired = _retire_stale(run, tickers, extended)
    ledger = _store_run_accounting(run, full, requested.gone, results, appended, old_ledger)
    if promote_manifest:
        _promote(settings, requested.classified, ledger, requested.gone["source_file"].to_list())
    calc_settings.record(settings, "bronze", tickers)
    outcome = _outcome(run, tickers, ledger, retired, extended, appended)
    write_run_summary(settings, outcome, requested.classified, run.written)
    return outcome


def _requested(settings: Settings, tickers: Sequence[str]) -> _Requested:
    """The current manifest split into the present and deleted files of ``tickers``."""
    bronze = paths(settings)
    if not bronze.current_manifest.exists():
        raise FileNotFoundError(
            f"no current manifest at {bronze.current_manifest}: materialize `manifest` first"
        )
    classified = pl.read_parquet(bronze.current_manifest)
    wanted = classified.filter(pl.col("ticker").is_in(list(tickers)))
    return _Requested(
        classified=classified,
        present=wanted.filter(pl.col("manifest_status") != mf.DELETED),
        gone=wanted.filter(pl.col("manifest_status") == mf.DELETED),
    )


def _run_append_path(run: _BronzeRun, present: pl.DataFrame
                     ) -> tuple[AppendResult | None, list[str], pl.DataFrame]:
    """Parse and write the appended lines (``_append_path``) unless the settings changed,
    which sends every file to the full path; its time counts as compute."""
    changed = calc_settings.changes(run.settings, "bronze")
    if changed is not None:
        run.log(f"bronze: settings changed since its files were built ({'; '.join(changed)}): "
                "every requested file is parsed in full")
    appended, extended, old_ledger = _append_path(
        run.settings, present if changed is None else present.clear(), run.run_id, run.built_ts)
    run.compute_seconds = time.perf_counter() - run.started
    if appended is not None and appended.valid.height:
        written = lake.write_symbol_files(appended.valid, paths(run.settings).data,
                                          run.settings.parquet, run.metadata, append=True)
        run.written |= written.listings
        run.log(f"bronze append path: {len(extended)} tickers, {appended.valid.height} new rows")
    return appended, extended, old_ledger


def _run_full_path(run: _BronzeRun, full: pl.DataFrame, batch_bytes: int
                   ) -> list[BronzeResult]:
    """Parse ``full`` in byte-bounded batches, each written while the next one is parsed.

    Returns the batches' rejects and ledgers (their valid rows are written, not kept).
    """
    bronze = paths(run.settings)
    results: list[BronzeResult] = []
    total = int(full["file_size_bytes"].sum() or 0)
    keep = _recent_writes_keeper(bronze.data, total)
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future[None] | None = None
        budget = min(batch_bytes, max(MIN_BATCH_BYTES, total // PIPELINE_BATCHES))
        batches = byte_batches(full, budget) if full.height else []
        for number, batch in enumerate(batches, start=1):
            tick = time.perf_counter()
            result = build_bronze(_bronze_input(batch), _thresholds(run.settings), run.run_id,
                                  run.built_ts, run.settings.ingest.max_line_bytes)
            run.compute_seconds += time.perf_counter() - tick
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_valid, run, result.valid, keep)
            results.append(BronzeResult(result.valid.clear(), result.rejects, result.ledger))
            if len(batches) > 1:
                run.log(f"bronze batch {number}/{len(batches)}: {batch.height} files parsed")
        if pending is not None:
            pending.result()
    return results


def _write_valid(run: _BronzeRun, valid: pl.DataFrame,
                 keep: Callable[[dict[str, str], pl.DataFrame], None] | None) -> None:
    """Write one batch's valid rows per ticker. Runs on the writer thread, the only one that
    touches ``run.written`` while the batches are parsed."""
    written = lake.write_symbol_files(valid, paths(run.settings).data, run.settings.parquet,
                                      run.metadata)
    run.written |= written.listings
    if keep is not None:
        keep(written.listings, valid)


def _recent_writes_keeper(data_root: Path, total: int
                          ) -> Callable[[dict[str, str], pl.DataFrame], None] | None:
    """Start this run's in-memory copy of the written Bronze files, or None when it would not
    fit: parsed rows take ~3x their raw text, so a run whose text alone exceeds the budget is
    not kept."""
    recent_writes.BRONZE.clear()
    if not recent_writes.BRONZE.fits(total):
        return None
    return functools.partial(recent_writes.BRONZE.remember, data_root)


def _retire_stale(run: _BronzeRun, tickers: Sequence[str], extended: Sequence[str]
                  ) -> list[str]:
    """Remove the Bronze rows of requested tickers this run wrote nothing for."""
    stale = sorted(set(tickers) - set(run.written) - set(extended))
    retired = lake.remove_symbol_files(paths(run.settings).data, stale)
    if retired:
        run.log(f"removed the Bronze rows of {len(retired)} tickers with no valid source now")
    return retired


def _store_run_accounting(run: _BronzeRun, full: pl.DataFrame, gone: pl.DataFrame,
                          results: Sequence[BronzeResult], appended: AppendResult | None,
                          old_ledger: pl.DataFrame) -> pl.DataFrame:
    """Store the ledger and rejects rows of both paths and of deleted files; returns the
    ledger rows of this run."""
    if results:
        _store_accounting(run.settings, _merge_results(results),
                          [*full["source_file"], *gone["source_file"]])
    elif gone.height:
        _store_accounting(run.settings, _empty_result(), gone["source_file"].to_list())
    ledgers = [r.ledger for r in results]
    if appended is not None:
        _store_appended_accounting(run.settings, appended, old_ledger)
        ledgers.append(appended.ledger)
    return pl.concat(ledgers, how="vertical_relaxed") if ledgers else _empty_result().ledger


def _outcome(run: _BronzeRun, tickers: Sequence[str], ledger: pl.DataFrame,
             retired: Sequence[str], extended: Sequence[str],
             appended: AppendResult | None) -> BronzeOutcome:
    """The run's counts from its ledger rows; what is not compute counts as write time."""
    return BronzeOutcome(
        run_id=run.run_id,
        tickers_requested=len(tickers),
        files_processed=ledger.height,
        files_failed=ledger.filter(pl.col("status") == "FAILED").height,
        files_empty=ledger.filter(pl.col("status") == "EMPTY").height,
        rows_valid=int(ledger["rows_valid"].sum() or 0),
        rows_invalid=int(ledger["rows_invalid"].sum() or 0),
        rows_rejected=int(ledger["rows_rejected"].sum() or 0),
        tickers_written=sorted(run.written),
        tickers_retired=sorted(retired),
        ledger=ledger,
        compute_seconds=run.compute_seconds,
        write_seconds=time.perf_counter() - run.started - run.compute_seconds,
        appended_rows=_rows_per_ticker(appended.valid, extended) if appended is not None
        else {},
    )


def _rows_per_ticker(rows: pl.DataFrame, tickers: Sequence[str]) -> dict[str, int]:
    """``{ticker: rows}`` for ``tickers`` (0 for a ticker without rows)."""
    counts = dict(rows.group_by("ticker").len().iter_rows()) if rows.height else {}
    return {ticker: int(counts.get(ticker, 0)) for ticker in tickers}


def _append_path(settings: Settings, present: pl.DataFrame, run_id: str,
                 built_ts: dt.datetime) -> tuple[AppendResult | None, list[str], pl.DataFrame]:
    """The append-path result for the tickers whose every present file is APPENDED and whose
    Bronze folder is consistent, the tickers it handled (the rest, fallbacks included, take the
    full path) and the previous ledger rows of their files."""
    bronze = paths(settings)
    status = pl.col("manifest_status")
    not_appended = present.filter((status != mf.APPENDED) | pl.col("fail_reason").is_not_null())
    excluded = set(not_appended["ticker"].drop_nulls())
    files = present.filter((status == mf.APPENDED) & ~pl.col("ticker").is_in(list(excluded)))
    if files.is_empty() or not bronze.ledger.exists():
        return None, [], pl.DataFrame(schema=LEDGER_SCHEMA)
    stable = _read_or_empty(bronze.stable_manifest).select(
        "source_file", prev_size=pl.col("file_size_bytes"))
    files = files.join(stable, on="source_file", how="inner")
    sources = files["source_file"].to_list()
    ledger = pl.read_parquet(bronze.ledger).filter(pl.col("source_file").is_in(sources))
    rejects = (pl.scan_parquet(bronze.rejects).filter(pl.col("source_file").is_in(sources))
               .collect() if bronze.rejects.exists() else None)
    if rejects is None:
        rejects = pl.DataFrame(schema=REJECTS_SCHEMA)
    result = build_bronze_append(files.select(*_bronze_input(files).columns, "prev_size"),
                                 rejects, ledger, _thresholds(settings), run_id, built_ts,
                                 settings.ingest.max_line_bytes)
    handled = sorted(set(files["ticker"]) - set(result.fallback))
    return result, handled, ledger


def _store_appended_accounting(settings: Settings, result: AppendResult,
                               old_ledger: pl.DataFrame) -> None:
    """Update the ledger rows of appended files and add the rejects of their new lines.

    Reject rows already stored for lines past a file's old end (a killed run re-run) are
    replaced, not doubled.
    """
    bronze = paths(settings)
    files = result.ledger["source_file"].to_list()
    lake.upsert_parquet(bronze.ledger, result.ledger, "source_file", files, settings.parquet,
                        sort_by=["source_file"])
    old_end = old_ledger.filter(pl.col("source_file").is_in(files)).select(
        "source_file", old_lines=pl.col("lines_total"))
    with lake.file_lock(bronze.rejects):
        old = pl.read_parquet(bronze.rejects) if bronze.rejects.exists() else result.rejects.clear()
        kept = old.join(old_end, on="source_file", how="left").filter(
            pl.col("old_lines").is_null() | (pl.col("line_no") <= pl.col("old_lines"))
        ).drop("old_lines")
        merged = pl.concat([kept, result.rejects], how="diagonal_relaxed")
        lake.write_parquet(merged.sort("source_file", "line_no"), bronze.rejects,
                           settings.parquet)


def _empty_result() -> BronzeResult:
    return BronzeResult(valid=pl.DataFrame(), rejects=pl.DataFrame(schema=REJECTS_SCHEMA),
                        ledger=pl.DataFrame(schema=LEDGER_SCHEMA))


def _merge_results(results: Sequence[BronzeResult]) -> BronzeResult:
    """One ledger and one rejects table from the batches (valid rows are already written)."""
    return BronzeResult(
        valid=results[0].valid,
        rejects=pl.concat([r.rejects for r in results], how="vertical_relaxed"),
        ledger=pl.concat([r.ledger for r in results], how="vertical_relaxed"),
    )


def write_run_summary(settings: Settings, outcome: BronzeOutcome, classified: pl.DataFrame,
                      written: Mapping[str, str]) -> Path:
    """The old run artifacts in ``<artifacts_root>/run_summaries/``: summary JSON, failed files
    and per-file results (the ledger rows of this run, with the Bronze path)."""
    folder = settings.artifacts_root / "run_summaries"
    ledger = outcome.ledger
    failed = ledger.filter(pl.col("status") == "FAILED").select(
        "source_file", error=pl.col("reasons"))
    results = ledger.select(
        "ticker", "exchange", "source_file",
        rows_total=pl.col("rows_valid") + pl.col("rows_invalid") + pl.col("rows_rejected"),
        rows_valid="rows_valid", rows_invalid="rows_invalid",
        bronze_path=pl.when(pl.col("ticker").is_in(list(written))).then(
            pl.lit(f"{paths(settings).data}/shard=") + lake_table.shard_expr(pl.col("ticker"))),
        success=pl.col("status") != "FAILED", error_message=pl.col("reasons"),
    )
    dates = ledger.select(pl.col("min_trade_date").min(), pl.col("max_trade_date").max()).row(0)
    problems = ledger.filter((pl.col("rows_invalid") > 0) | (pl.col("rows_rejected") > 0)
                             | (pl.col("status") == "FAILED"))["ticker"].drop_nulls()
    summary = {
        "run_id": outcome.run_id,
        "finished_ts": dt.datetime.now(dt.UTC),
        "duration_sec": round(outcome.compute_seconds + outcome.write_seconds, 3),
        "raw_root": str(settings.raw_root),
        "files_discovered_total": classified.filter(pl.col("manifest_status") != mf.DELETED).height,
        "files_selected_total": outcome.files_processed,
        "files_processed_success": outcome.files_processed - outcome.files_failed,
        "files_processed_failed": outcome.files_failed,
        "status_counts": mf.status_counts(classified),
        "exchange_counts": mf.exchange_counts(classified),
        "tickers_processed_count": len(outcome.tickers_written),
        "rows_valid": outcome.rows_valid,
        "rows_invalid": outcome.rows_invalid,
        "rows_rejected": outcome.rows_rejected,
        "tickers_with_problems": sorted(set(problems.to_list()))[:200],
        "failed_files": failed.head(200).to_dicts(),
        "global_min_trade_date": dates[0],
        "global_max_trade_date": dates[1],
        "outputs": {
            "manifest_current_path": str(paths(settings).current_manifest),
            "manifest_stable_path": str(paths(settings).stable_manifest),
            "bronze_root": str(settings.bronze_root),
            "ledger_path": str(paths(settings).ledger),
            "rejects_path": str(paths(settings).rejects),
        },
    }
    lake.write_json({"run_id": outcome.run_id, "failed_files": failed.to_dicts()},
                    folder / f"{outcome.run_id}_failed_files.json")
    lake.write_parquet(results, folder / f"{outcome.run_id}_ticker_results.parquet")
    return lake.write_json(summary, folder / f"{outcome.run_id}_bronze_run_summary.json")


def reconciliation_failures(settings: Settings) -> pl.DataFrame:
    """Ledger rows where the lines do not add up (empty when everything reconciles)."""
    ledger_path = paths(settings).ledger
    if not ledger_path.exists():
        return pl.DataFrame()
    ledger = pl.read_parquet(ledger_path)
    parts = ["lines_header", "lines_blank", "rows_rejected", "rows_valid", "rows_invalid"]
    return ledger.filter(pl.col("lines_total") != pl.sum_horizontal(parts))
