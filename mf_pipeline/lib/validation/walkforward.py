"""Walk-forward aggregation: several splits' validation results → tables, summary, report.

Pure functions over per-split records (research.md §7.3–7.5, §8.4, §9.7); the caller reads
the run folders and writes the files. A record is a dict::

    {"train_end": "2016-12-31", "split_id": "wf2016-12-31", "status": "SUCCESS" | "FAILED",
     "error": str | None, "test_start": ..., "test_end": ..., "common_rows": int,
     "models": {"HMM": {...}, "Flow": {...}, "Cluster": {...}},
     "comparisons": {"HMM_vs_Flow": {...}, "HMM_vs_Cluster": {...}}}

with per model ``validation_run_dir``, ``run_summary`` (``rows``, ``state_count``),
``validation_scorecard`` (the JSON payload), ``state_scorecard`` (frame), ``nan_warning_total``,
``transition_summary_rows``, ``bootstrap_pairwise_rows`` and, when QA / policy ran,
``qa_flagged`` (flagged states with ``issues``), ``policy_state_table`` (with ``class_label``,
``qa_labels``) and ``policy_dir``. Only SUCCESS records contribute metrics.

Changes from the old tool:

* #18 — :func:`test_windows` gives non-overlapping test windows (each split is judged up to the
  next train end, the last to the end of data); the report states which design was used.
* #19 — the three models of a split are validated on the same rows (``common_rows``, the rows
  both model runs labelled); tables and report show it next to each model's ``rows``.
* #20 — a metric's win goes to the best non-null value among at least two models; equal values
  go to the first model in the stable order HMM, Flow, Cluster, and ties are counted.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

MODEL_ORDER: tuple[str, ...] = ("HMM", "Flow", "Cluster")
"""Stable model order: table order and the tie-break of the wins."""
_RANK = {m: i for i, m in enumerate(MODEL_ORDER)}
COMPARISONS: dict[str, tuple[str, str]] = {
    "HMM_vs_Flow": ("HMM", "Flow"),
    "HMM_vs_Cluster": ("HMM", "Cluster"),
}
SUCCESS = "SUCCESS"
SCORECARD_METRICS: tuple[str, ...] = (
    "forward_separation_score",
    "pairwise_diff_significant_share",
    "avg_ci_width_fwd_ret_10",
    "avg_state_sign_consistency",
    "avg_state_ret_cv",
)
WIDE_COLUMNS: tuple[str, ...] = (
    "rows",
    "n_states",
    "validation_grade",
    "forward_separation_score",
    "pairwise_diff_significant_share",
    "avg_ci_width_fwd_ret_10",
    "avg_state_sign_consistency",
    "avg_state_ret_cv",
    "nan_warning_total",
    "transition_summary_rows",
)
WIN_METRICS: dict[str, tuple[str, bool]] = {
    "highest_separation": ("forward_separation_score", True),
    "lowest_ci_width": ("avg_ci_width_fwd_ret_10", False),
    "best_sign_consistency": ("avg_state_sign_consistency", True),
}
"""Win counter → (metric, higher is better)."""
TIE_RULE = (
    "a split's win goes to the best non-null value among at least two models; equal values "
    "go to the first model in the order HMM, Flow, Cluster"
)
GRADE_SCORE = {"A": 3, "B": 2, "C": 1}
SPLIT_COLUMNS: tuple[str, ...] = (
    "train_end", "split_id", "status", "error", "test_start", "test_end", "common_rows",
)  # fmt: skip

_LONG_SCHEMA: dict[str, Any] = {
    "train_end": pl.Date,
    "split_id": pl.String,
    "model": pl.String,
    "validation_run_dir": pl.String,
    "common_rows": pl.Int64,
    "rows": pl.Int64,
    "n_states": pl.Int64,
    "validation_grade": pl.String,
    **dict.fromkeys(SCORECARD_METRICS, pl.Float64),
    "nan_warning_total": pl.Int64,
    "date_min": pl.String,
    "date_max": pl.String,
    "transition_summary_rows": pl.Int64,
    "state_scorecard_rows": pl.Int64,
    "bootstrap_pairwise_rows": pl.Int64,
}


# --------------------------------------------------------------------------- test windows


def test_windows(
    train_ends: Sequence[dt.date], data_end: dt.date | None, non_overlapping: bool = True
) -> list[tuple[dt.date, dt.date | None]]:
    """``(train_end, test_end)`` per split, train ends sorted and deduplicated (fix #18).

    A split's test rows are the dates after ``train_end`` (and its embargo) up to ``test_end``
    inclusive. Non-overlapping: ``test_end`` is the next train end and the last split runs to
    ``data_end``; otherwise every split runs to ``data_end`` (the old expanding design, whose
    test sets contain one another). ``data_end`` None: end of data, not known here.
    """
    ends = sorted(set(train_ends))
    if data_end is not None and ends and ends[-1] >= data_end:
        late = [d.isoformat() for d in ends if d >= data_end]
        raise ValueError(f"train ends {late} leave no test date (data end {data_end})")
    nexts = ends[1:] + [None] if non_overlapping and ends else [None] * len(ends)
    return [(end, data_end if nxt is None else nxt) for end, nxt in zip(ends, nexts, strict=True)]


def windows_overlap(split_runs: pl.DataFrame) -> bool:
    """Whether any split's test window reaches into the next split's (null end = open)."""
    runs = split_runs.filter(pl.col("test_start").is_not_null()).sort("train_end")
    if runs.height < 2:
        return False
    start, end = pl.col("test_start").cast(pl.Date), pl.col("test_end").cast(pl.Date)
    return bool(
        runs.select((end.is_null() | (end >= start.shift(-1))).head(runs.height - 1).any()).item()
    )


# --------------------------------------------------------------------------- helpers


def _date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _finite(value: Any) -> float | None:
    """A float, or None for null / NaN / inf / non-numbers (the old "finite only" rule)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _model_rank() -> pl.Expr:
    return pl.col("model").replace_strict(_RANK, default=len(_RANK), return_dtype=pl.Int8)


def _successes(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("status") == SUCCESS]


def _failed_splits(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"train_end": str(_date(r.get("train_end"))), "status": r.get("status"),
             "error": r.get("error")} for r in records if r.get("status") != SUCCESS]  # fmt: skip


def _models(record: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The record's models in the stable order (unknown names after, alphabetically)."""
    models = record.get("models") or {}
    return sorted(models.items(), key=lambda kv: (_RANK.get(kv[0], len(_RANK)), kv[0]))


# --------------------------------------------------------------------------- §7.3 tables


def model_summary_long(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per (successful split, model): sizes, grade and scorecard metrics (non-finite
    → null), NaN count and table sizes; sorted by train end, then HMM, Flow, Cluster."""
    rows = []
    for rec in _successes(records):
        for model, m in _models(rec):
            card = m.get("validation_scorecard") or {}
            summary = m.get("run_summary") or {}
            states = m.get("state_scorecard")
            rows.append({
                "train_end": _date(rec.get("train_end")),
                "split_id": rec.get("split_id"),
                "model": model,
                "validation_run_dir": m.get("validation_run_dir"),
                "common_rows": _int(rec.get("common_rows")),
                "rows": _int(summary.get("rows")),
                "n_states": _int(summary.get("state_count")),
                "validation_grade": card.get("validation_grade"),
                **{k: _finite(card.get(k)) for k in SCORECARD_METRICS},
                "nan_warning_total": _int(m.get("nan_warning_total")),
                "date_min": card.get("date_min"),
                "date_max": card.get("date_max"),
                "transition_summary_rows": _int(m.get("transition_summary_rows")),
                "state_scorecard_rows": None if states is None else states.height,
                "bootstrap_pairwise_rows": _int(m.get("bootstrap_pairwise_rows")),
            })  # fmt: skip
    frame = pl.DataFrame(rows, schema=_LONG_SCHEMA)
    return frame.sort(["train_end", _model_rank()])


def model_summary_wide(long: pl.DataFrame) -> pl.DataFrame:
    """One row per train end with ``<model>_<col>`` for HMM, Flow, Cluster (a model missing
    from a split leaves its columns null); ``common_rows`` once per split."""
    base = long.group_by("train_end").agg(pl.col("common_rows").first())
    for model in MODEL_ORDER:
        part = long.filter(pl.col("model") == model).select(
            "train_end", *(pl.col(c).alias(f"{model.lower()}_{c}") for c in WIDE_COLUMNS)
        )
        base = base.join(part, on="train_end", how="left")
    return base.sort("train_end")


def comparison_summary(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Per successful split and comparison present in the record: the two grades and the
    differences b − a of the scorecard metrics (a = HMM), taken from the split's own model
    scorecards, so they hold the same rows as the model table."""
    rows = []
    for rec in _successes(records):
        models = rec.get("models") or {}
        for name, cmp in (rec.get("comparisons") or {}).items():
            a, b = COMPARISONS.get(name, (None, None))
            card_a = (models.get(a) or {}).get("validation_scorecard") or {}
            card_b = (models.get(b) or {}).get("validation_scorecard") or {}
            deltas = {}
            for k in SCORECARD_METRICS:
                va, vb = _finite(card_a.get(k)), _finite(card_b.get(k))
                deltas[f"delta_{k}"] = None if va is None or vb is None else vb - va
            rows.append({
                "train_end": _date(rec.get("train_end")),
                "comparison": name,
                "comparison_dir": (cmp or {}).get("comparison_dir"),
                "run_a_validation_grade": card_a.get("validation_grade"),
                "run_b_validation_grade": card_b.get("validation_grade"),
                **deltas,
            })  # fmt: skip
    schema = {"train_end": pl.Date, "comparison": pl.String, "comparison_dir": pl.String,
              "run_a_validation_grade": pl.String, "run_b_validation_grade": pl.String,
              **{f"delta_{k}": pl.Float64 for k in SCORECARD_METRICS}}  # fmt: skip
    return pl.DataFrame(rows, schema=schema).sort("train_end", "comparison")


def state_metrics_long(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Every state-scorecard row of every successful split and model, with ``train_end``,
    ``model`` and ``validation_run_dir`` first (columns missing in a part are null)."""
    parts = [
        m["state_scorecard"].select(
            pl.lit(_date(rec.get("train_end")), pl.Date).alias("train_end"),
            pl.lit(model, pl.String).alias("model"),
            pl.lit(m.get("validation_run_dir"), pl.String).alias("validation_run_dir"),
            pl.all(),
        )
        for rec in _successes(records)
        for model, m in _models(rec)
        if m.get("state_scorecard") is not None
    ]
    if not parts:
        return pl.DataFrame(schema={"train_end": pl.Date, "model": pl.String,
                                    "validation_run_dir": pl.String})  # fmt: skip
    return pl.concat(parts, how="diagonal_relaxed")


def split_runs(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The split records as a table: identity, status, test window, common rows and each
    model's validation folder (``<model>_validation_run_dir``)."""
    rows = []
    for rec in records:
        models = rec.get("models") or {}
        rows.append({
            "train_end": _date(rec.get("train_end")),
            "split_id": rec.get("split_id"),
            "status": rec.get("status"),
            "error": rec.get("error"),
            "test_start": _date(rec.get("test_start")),
            "test_end": _date(rec.get("test_end")),
            "common_rows": _int(rec.get("common_rows")),
            **{f"{m.lower()}_validation_run_dir": (models.get(m) or {}).get("validation_run_dir")
               for m in MODEL_ORDER},
        })  # fmt: skip
    schema = {"train_end": pl.Date, "split_id": pl.String, "status": pl.String,
              "error": pl.String, "test_start": pl.Date, "test_end": pl.Date,
              "common_rows": pl.Int64,
              **{f"{m.lower()}_validation_run_dir": pl.String for m in MODEL_ORDER}}  # fmt: skip
    return pl.DataFrame(rows, schema=schema).sort("train_end")


# --------------------------------------------------------------------------- §7.4 aggregates


def _weighted_mean(metric: str) -> pl.Expr:
    both = pl.col(metric).is_not_null() & pl.col("rows").is_not_null()
    weight = pl.col("rows").filter(both).cast(pl.Float64)
    total = weight.sum()
    return pl.when(total > 0).then((pl.col(metric).filter(both) * weight).sum() / total)


def _model_aggregates(long: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per model (HMM, Flow, Cluster, then any other): the §7.4 statistics."""
    sep, ci = "forward_separation_score", "avg_ci_width_fwd_ret_10"
    sign, cv = "avg_state_sign_consistency", "avg_state_ret_cv"
    stats = long.group_by("model").agg(
        pl.len().alias("splits_completed"),
        pl.col("rows").sum().alias("total_rows_sum"),
        pl.col("rows").median().alias("rows_median"),
        pl.col(sep).mean().alias(f"{sep}_mean"),
        pl.col(sep).median().alias(f"{sep}_median"),
        pl.col(sep).std(ddof=0).alias(f"{sep}_std"),
        pl.col(ci).mean().alias(f"{ci}_mean"),
        pl.col(ci).median().alias(f"{ci}_median"),
        pl.col(sign).mean().alias(f"{sign}_mean"),
        pl.col(sign).median().alias(f"{sign}_median"),
        pl.col(cv).mean().alias(f"{cv}_mean"),
        pl.col(cv).median().alias(f"{cv}_median"),
        pl.col(cv).quantile(0.9, interpolation="linear").alias(f"{cv}_p90"),
        pl.col("pairwise_diff_significant_share").mean()
        .alias("pairwise_diff_significant_share_mean"),
        pl.col("transition_summary_rows").mean().alias("transition_summary_rows_mean"),
        pl.col("validation_grade").replace_strict(GRADE_SCORE, default=None,
                                                  return_dtype=pl.Float64)
        .mean().alias("validation_grade_score_mean_heuristic"),
        pl.col("nan_warning_total").sum().alias("nan_warning_total_sum"),
        _weighted_mean(sep).alias("weighted_mean_forward_separation"),
        _weighted_mean(ci).alias("weighted_mean_avg_ci_width"),
        _weighted_mean(sign).alias("weighted_mean_sign_consistency"),
    )  # fmt: skip
    grades = (
        long.with_columns(pl.col("validation_grade").fill_null("NULL"))
        .group_by("model", "validation_grade").len().sort("validation_grade")
    )  # fmt: skip
    out: dict[str, dict[str, Any]] = {m: {"splits_completed": 0, "total_rows_sum": 0}
                                      for m in MODEL_ORDER}  # fmt: skip
    for row in stats.sort(_model_rank(), "model").iter_rows(named=True):
        model = row.pop("model")
        counts = grades.filter(pl.col("model") == model)
        row["validation_grade_counts"] = dict(zip(counts["validation_grade"].to_list(),
                                                  counts["len"].to_list(), strict=True))
        out[model] = row
    return out


def wins_by_metric(long: pl.DataFrame) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(wins, ties) per win counter (fix #20). A split counts for a metric when at least two
    models have a non-null value; the best value wins, equal best values go to the first
    model in HMM, Flow, Cluster order, and such splits are counted in ``ties``."""
    wins: dict[str, dict[str, int]] = {}
    ties: dict[str, int] = {}
    ranked = long.with_columns(_model_rank().alias("_order"))
    for name, (metric, higher) in WIN_METRICS.items():
        best = pl.col(metric).max() if higher else pl.col(metric).min()
        contest = (
            ranked.filter(pl.col(metric).is_not_null())
            .filter(pl.len().over("train_end") >= 2)
            .with_columns((pl.col(metric) == best.over("train_end")).alias("_best"))
            .filter(pl.col("_best"))
            .sort("train_end", "_order", "model")
            .group_by("train_end", maintain_order=True)
            .agg(pl.col("model").first(), pl.len().alias("n_best"))
        )
        counts = dict.fromkeys(MODEL_ORDER, 0)
        for model, n in contest.group_by("model").len().iter_rows():
            counts[model] = counts.get(model, 0) + n
        wins[name] = counts
        ties[name] = int((contest["n_best"] > 1).sum())
    return wins, ties


def aggregate_summary(
    records: Sequence[Mapping[str, Any]], long: pl.DataFrame | None = None
) -> dict[str, Any]:
    """``wf_aggregate_summary.json`` (§7.4) plus the tie rule and tie counts (#20) and each
    split's common row count (#19). ``long`` defaults to :func:`model_summary_long`."""
    long = model_summary_long(records) if long is None else long
    failed = [r for r in records if r.get("status") != SUCCESS]
    wins, ties = wins_by_metric(long)
    return {
        "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "splits_total": len(records),
        "splits_successful": len(records) - len(failed),
        "splits_failed": len(failed),
        "failed_splits": _failed_splits(records),
        "common_rows_by_split": {str(_date(r.get("train_end"))): _int(r.get("common_rows"))
                                 for r in _successes(records)},  # fmt: skip
        "aggregate_by_model": _model_aggregates(long),
        "wins_by_metric": wins,
        "wins_ties_by_metric": ties,
        "wins_tie_rule": TIE_RULE,
    }


# --------------------------------------------------------------------------- §8.4 / §9.7


def issue_frequency(frame: pl.DataFrame, labels: str) -> pl.DataFrame:
    """Per (model, issue): ``split_count`` = distinct train ends where it appears and
    ``state_count`` = state rows having it; sorted by split count, state count (desc)."""
    schema = {"model": pl.String, "issue": pl.String, "split_count": pl.UInt32,
              "state_count": pl.UInt32}  # fmt: skip
    if frame.is_empty() or labels not in frame.columns:
        return pl.DataFrame(schema=schema)
    col = pl.col(labels)
    as_list = col if frame.schema[labels] == pl.List(pl.String) else col.str.split(",")
    return (
        frame.select("model", "train_end", as_list.alias("issue"))
        .explode("issue")
        .with_columns(pl.col("issue").str.strip_chars())
        .filter(pl.col("issue").is_not_null() & (pl.col("issue") != ""))
        .group_by("model", "issue")
        .agg(pl.col("train_end").n_unique().alias("split_count"), pl.len().alias("state_count"))
        .sort(["split_count", "state_count", "model", "issue"],
              descending=[True, True, False, False])
        .cast({"split_count": pl.UInt32, "state_count": pl.UInt32})
    )  # fmt: skip


def _tagged(records: Sequence[Mapping[str, Any]], key: str, dir_key: str) -> pl.DataFrame:
    """The ``key`` frames of every successful split and model with train end, model, folder."""
    parts = [
        m[key].select(
            pl.lit(_date(rec.get("train_end")), pl.Date).alias("train_end"),
            pl.lit(model, pl.String).alias("model"),
            pl.lit(m.get(dir_key), pl.String).alias(dir_key),
            pl.all(),
        )
        for rec in _successes(records)
        for model, m in _models(rec)
        if m.get(key) is not None
    ]
    if not parts:
        return pl.DataFrame(schema={"train_end": pl.Date, "model": pl.String, dir_key: pl.String})
    return pl.concat(parts, how="diagonal_relaxed")


@dataclass
class QaWalkforward:
    flagged: pl.DataFrame  # flagged states of all splits + train_end, model, validation_run_dir
    issue_frequency: pl.DataFrame
    summary: dict[str, Any]


def qa_walkforward(
    records: Sequence[Mapping[str, Any]], thresholds: Mapping[str, Any] | None = None
) -> QaWalkforward:
    """Cluster QA over the splits (§8.4), for every model that carries ``qa_flagged``."""
    flagged = _tagged(records, "qa_flagged", "validation_run_dir")
    analysed = [(r, model) for r in _successes(records) for model, m in _models(r)
                if m.get("qa_flagged") is not None]  # fmt: skip
    by_model = {}
    for model in dict.fromkeys(model for _, model in analysed):
        mine = flagged.filter(pl.col("model") == model)
        by_model[model] = {
            "splits_analyzed": sum(1 for _, m in analysed if m == model),
            "splits_flagged": mine["train_end"].n_unique(),
            "total_flagged_states": mine.height,
        }
    freq = issue_frequency(flagged, "issues")
    return QaWalkforward(flagged, freq, {
        "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "splits_analyzed": len({str(r.get("train_end")) for r, _ in analysed}),
        "total_flagged_states": flagged.height,
        "by_model": by_model,
        "issue_frequency": freq.to_dicts(),
        "thresholds": dict(thresholds or {}),
    })  # fmt: skip


@dataclass
class HardeningWalkforward:
    split_counts: pl.DataFrame  # per (split, model): status, allow/watch/block counts, error
    state_stats: pl.DataFrame  # all policy state tables + train_end, model, policy_dir
    issue_frequency: pl.DataFrame  # of the QA labels the policy received
    summary: dict[str, Any]


_CLASSES = ("ALLOW", "WATCH", "BLOCK")


def hardening_walkforward(
    records: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, Any] | None = None,
    recommendation: Mapping[str, Any] | None = None,
) -> HardeningWalkforward:
    """Policy (hardening) over the splits (§9.7). ``recommendation`` is the dict of
    ``policy.recommend_thresholds`` on :attr:`HardeningWalkforward.state_stats`, passed back
    in to be part of the summary."""
    states = _tagged(records, "policy_state_table", "policy_dir")
    counts = (
        states.group_by("train_end", "model")
        .agg(*((pl.col("class_label") == c).sum().alias(f"{c.lower()}_count") for c in _CLASSES))
        if not states.is_empty() else
        pl.DataFrame(schema={"train_end": pl.Date, "model": pl.String,
                             **{f"{c.lower()}_count": pl.UInt32 for c in _CLASSES}})
    )  # fmt: skip
    rows = []
    for rec in records:  # a failed split: one row without model; else one row per model
        ok = rec.get("status") == SUCCESS
        for model, m in _models(rec) if ok else [(None, {})]:
            status = rec.get("status")
            if ok and m.get("policy_state_table") is None:
                status = "NO_POLICY"
            rows.append({"train_end": _date(rec.get("train_end")), "model": model,
                         "status": status, "policy_dir": m.get("policy_dir"),
                         "error": None if ok else rec.get("error")})  # fmt: skip
    split_counts = (
        pl.DataFrame(rows, schema={"train_end": pl.Date, "model": pl.String,
                                   "status": pl.String, "policy_dir": pl.String,
                                   "error": pl.String})
        .join(counts, on=["train_end", "model"], how="left")
        .select("train_end", "model", "status", "allow_count", "watch_count", "block_count",
                "policy_dir", "error")
        .sort(["train_end", _model_rank()])
    )  # fmt: skip
    done = split_counts.filter(pl.col("status") == SUCCESS)
    totals = {f"{c.lower()}_count_total": int(done[f"{c.lower()}_count"].sum())
              for c in _CLASSES}  # fmt: skip
    by_model = {
        model: {f"{c.lower()}_count_total": int(part[f"{c.lower()}_count"].sum())
                for c in _CLASSES} | {"splits_with_policy": part.height}
        for (model,), part in done.group_by("model", maintain_order=True)
    }  # fmt: skip
    failed = [r for r in records if r.get("status") != SUCCESS]
    missing = split_counts.filter(pl.col("status") == "NO_POLICY")
    freq = issue_frequency(states, "qa_labels")
    return HardeningWalkforward(split_counts, states, freq, {
        "generated_ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "thresholds_used": dict(thresholds or {}),
        "splits_total": len(records),
        "splits_successful": len(records) - len(failed),
        "splits_failed": len(failed),
        **totals,
        "by_model": by_model,
        "failed_splits": _failed_splits(records),
        "models_without_policy": [
            {"train_end": str(d), "model": m}
            for d, m in missing.select("train_end", "model").rows()
        ],
        "threshold_recommendation": dict(recommendation) if recommendation else None,
    })  # fmt: skip


# --------------------------------------------------------------------------- §7.5 report


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "/").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines if rows else [*lines, "| " + " | ".join("—" for _ in headers) + " |"]


_INTERPRETATION = (
    "Separation is the spread (max − min) of the states' mean 10-day forward return; it grows "
    "with the number of states, so compare models within a split, not across state counts.",
    "CI width is that of a state's mean 10-day forward return; narrower means a more precise "
    "mean, not a larger one. Sign consistency is the share of rolling windows whose mean has "
    "the state's dominant sign (a steady bearish state scores high too).",
    "Weighted means weight each split by its rows; the grade score (A=3, B=2, C=1) is a "
    "heuristic summary, not a test.",
    "Wins count splits, not effect sizes: read them with the per-split table above, and the "
    "state-level edges (bootstrap p-values after correction) before trusting a state.",
)


def full_report(
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    long: pl.DataFrame,
    config: Mapping[str, Any],
    wf_id: str | None = None,
) -> str:
    """``wf_full_report.md`` (§7.5) with the test-window design (#18), the common rows of
    every split (#19) and the tie rule of the wins (#20)."""
    runs = split_runs(records)
    out = [f"# Walk-forward validation report{f': {wf_id}' if wf_id else ''}", ""]
    out += ["## Configuration", "", *(f"- {k}: {_fmt(v)}" for k, v in config.items()), ""]

    overlap = windows_overlap(runs)
    design = (
        "Test windows overlap (expanding design: each split runs to the end of data), so later "
        "splits' test rows are contained in earlier ones and the splits are NOT independent."
        if overlap else
        "Test windows do not overlap: each split is judged on the dates after its train end "
        "(and embargo) up to the next train end, the last one to the end of data, so every "
        "split scores a separate period."
    )  # fmt: skip
    out += ["## Test windows", "", design, ""]
    out += _table(["train_end", "split_id", "status", "test_start", "test_end", "common_rows"],
                  [(r["train_end"], r["split_id"], r["status"], r["test_start"],
                    r["test_end"] or ("end of data" if r["test_start"] else None),
                    r["common_rows"])
                   for r in runs.iter_rows(named=True)])  # fmt: skip

    out += ["", "## Same rows for every model", "",
            "HMM, Flow and Cluster are validated on the same rows of each split: the rows that "
            "both the HMM run and the clustering run labelled (`common_rows`). A model's `rows` "
            "can be lower only by rows whose state is null, which the adapter drops.", ""]
    rows_by = {(r["train_end"], r["model"]): r["rows"] for r in long.iter_rows(named=True)}
    out += _table(["train_end", "common_rows", *(f"{m} rows" for m in MODEL_ORDER)],
                  [(r["train_end"], r["common_rows"],
                    *(rows_by.get((r["train_end"], m)) for m in MODEL_ORDER))
                   for r in runs.filter(pl.col("status") == SUCCESS).iter_rows(named=True)])

    out += ["", "## Split status", ""]
    out += _table(["train_end", "status", "error"],
                  [(r["train_end"], r["status"], r["error"]) for r in runs.iter_rows(named=True)])

    metrics = ["rows", "n_states", "validation_grade", *SCORECARD_METRICS, "nan_warning_total"]
    out += ["", "## Split x model metrics", ""]
    out += _table(["train_end", "model", *metrics],
                  long.select("train_end", "model", *metrics).rows())

    out += ["", "## Aggregate summary", ""]
    agg_cols = ["splits_completed", "total_rows_sum", "forward_separation_score_mean",
                "forward_separation_score_median", "forward_separation_score_std",
                "weighted_mean_forward_separation", "avg_ci_width_fwd_ret_10_mean",
                "weighted_mean_avg_ci_width", "avg_state_sign_consistency_mean",
                "weighted_mean_sign_consistency", "avg_state_ret_cv_p90",
                "validation_grade_score_mean_heuristic", "validation_grade_counts"]
    by_model = summary["aggregate_by_model"]
    out += _table(["statistic", *by_model],
                  [(c, *(a.get(c) for a in by_model.values())) for c in agg_cols])

    out += ["", "## Wins by metric", "", f"Tie rule: {TIE_RULE}.", ""]
    wins, ties = summary["wins_by_metric"], summary["wins_ties_by_metric"]
    out += _table(["metric", *MODEL_ORDER, "splits with a tie"],
                  [(k, *(wins[k].get(m, 0) for m in MODEL_ORDER), ties.get(k, 0)) for k in wins])
    out += ["", "## Interpretation", "", *(f"- {b}" for b in _INTERPRETATION), ""]
    return "\n".join(out)
