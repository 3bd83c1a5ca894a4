"""State mapping: direction hint, policy class, score and eligibility per row (spec §1.2, §3).

Every source builds one small table (one row per known state) and joins it onto the bars, so
the cost is a hash join whatever the row count. Rows whose state the table does not know get
the source's "unmapped" defaults.

HMM directions must come from data the traded rows did not produce (fault 6): a state map, or
a validation scorecard computed on training rows (the walk-forward split's
``train_state_scorecard.csv``); a scorecard of the very rows being traded is in-sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

LONG, SHORT, UNCONFIRMED = "LONG_BIAS", "SHORT_BIAS", "UNCONFIRMED"
DIRECTIONS: tuple[str, ...] = (LONG, SHORT, UNCONFIRMED)
CLASSES: tuple[str, ...] = ("ALLOW", "WATCH", "BLOCK")
HMM_MAPPING_SOURCES: tuple[str, ...] = ("state_map", "validation_scorecard", "train_scorecard",
                                         "none")
"""``train_scorecard``: a split's ``train_state_scorecard.csv`` (forward returns of each
filtered state on the TRAIN rows; the walk-forward backtest's causal direction source)."""
POLICY_FILTER_MODES: tuple[str, ...] = ("allow_only", "allow_watch", "all_states")
SCORECARD_COLUMNS: tuple[str, ...] = (
    "state_id", "fwd_ret_10_mean", "fwd_ret_10_ci_lo", "fwd_ret_10_ci_hi",
)  # fmt: skip
MAPPED_COLS: tuple[str, ...] = (
    "state_direction_hint", "state_class", "state_score", "policy_reason_flags",
)  # fmt: skip


@dataclass(frozen=True)
class FlowMapping:
    """Flow state codes per direction (settings ``backtest.flow_mapping``); a code in several
    lists takes the first of long, short, ignore."""

    long_states: tuple[int, ...] = (1, 2)
    short_states: tuple[int, ...] = (3, 4)
    ignore_states: tuple[int, ...] = (0,)


def normalize_direction(value: Any) -> str:
    """Trimmed, upper-cased direction; anything outside the three values is UNCONFIRMED."""
    text = str(value).strip().upper()
    return text if text in DIRECTIONS else UNCONFIRMED


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def directions_from_state_map(payload: Mapping[str, Any]) -> dict[int, str]:
    """Directions from a state-map JSON: ``{"mapping": {"<id>": dir}}`` or flat ``{"<id>": dir}``.

    Keys must be integer-like (else ``ValueError``); values outside the three directions become
    UNCONFIRMED.
    """
    if not isinstance(payload, Mapping):
        raise ValueError(f"state map must be a JSON object, got {type(payload).__name__}")
    inner = payload.get("mapping")
    raw = inner if isinstance(inner, Mapping) else payload
    out: dict[int, str] = {}
    for key, value in raw.items():
        try:
            state_id = int(key)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state map key {key!r} is not an integer state id") from exc
        out[state_id] = normalize_direction(value)
    return out


def directions_from_scorecard(
    scorecard: pl.DataFrame, min_abs_forward_mean: float = 0.0
) -> dict[int, str]:
    """Directions from a validation scorecard's ``fwd_ret_10`` mean and CI (spec §3).

    A CI with both bounds finite and above (below) zero gives LONG_BIAS (SHORT_BIAS). Otherwise
    a finite mean with ``|mean| >= min_abs_forward_mean`` gives its sign, a zero mean counting
    as SHORT_BIAS; anything else is UNCONFIRMED. Fault 18, kept for compatibility: with the
    default threshold 0.0 the CI test never changes the answer (every finite mean passes, so
    the direction is simply the sign of the mean) and a mean of exactly 0 becomes SHORT_BIAS;
    raise the threshold to leave weak states UNCONFIRMED. Use a scorecard of training rows only
    (fault 6). A state listed twice takes its last row.
    """
    missing = [c for c in SCORECARD_COLUMNS if c not in scorecard.columns]
    if missing:
        raise ValueError(f"validation state scorecard is missing the columns {missing}")

    def finite(col: str) -> pl.Expr:
        x = pl.col(col).cast(pl.Float64, strict=False)
        return pl.when(x.is_finite()).then(x)

    lo, hi, mean = finite("fwd_ret_10_ci_lo"), finite("fwd_ret_10_ci_hi"), finite("fwd_ret_10_mean")
    both = lo.is_not_null() & hi.is_not_null()
    direction = (
        pl.when(both & (lo > 0) & (hi > 0)).then(pl.lit(LONG))
        .when(both & (lo < 0) & (hi < 0)).then(pl.lit(SHORT))
        .when(mean.is_not_null() & (mean.abs() >= min_abs_forward_mean))
        .then(pl.when(mean > 0).then(pl.lit(LONG)).otherwise(pl.lit(SHORT)))
        .otherwise(pl.lit(UNCONFIRMED))
    )  # fmt: skip
    table = scorecard.select(
        pl.col("state_id").cast(pl.Int64, strict=False), direction.alias("direction")
    ).filter(pl.col("state_id").is_not_null())
    return dict(zip(table["state_id"].to_list(), table["direction"].to_list(), strict=True))


def _policy_entries(policy: Mapping[str, Any]) -> dict[int, tuple[str, str, float | None, str]]:
    """state_id -> (direction, class, score, reasons) from a cluster hardening policy."""
    per_state = policy.get("per_state", [])
    if not isinstance(per_state, list):
        raise ValueError("cluster hardening policy: 'per_state' must be a list")
    out: dict[int, tuple[str, str, float | None, str]] = {}
    for entry in per_state:
        if not isinstance(entry, Mapping):
            continue
        try:
            state_id = int(entry.get("state_id"))
        except (TypeError, ValueError):
            continue
        reasons = entry.get("reasons")
        flags = ",".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons or "")
        out[state_id] = (
            normalize_direction(entry.get("allow_direction_hint")),
            str(entry.get("class_label") or "BLOCK").upper(),
            _finite(entry.get("tradability_score")),
            flags,
        )
    return out


def _join_table(
    frame: pl.DataFrame,
    entries: Mapping[int, tuple[str, str, float | None, str]],
    unmapped: tuple[str, str, str],
) -> pl.DataFrame:
    """Join the per-state table onto the bars; unknown states get (direction, class, reason)."""
    table = pl.DataFrame(
        [(k, *v) for k, v in entries.items()],
        schema={"state_id": frame.schema["state_id"], **dict.fromkeys(MAPPED_COLS, pl.Utf8)}
        | {"state_score": pl.Float64},
        orient="row",
    )
    direction, cls, reason = unmapped
    joined = frame.drop(MAPPED_COLS, strict=False).join(
        table, on="state_id", how="left", maintain_order="left"
    )
    joined = joined.with_columns(
        pl.col("state_direction_hint").fill_null(direction),
        pl.col("state_class").fill_null(cls),
        pl.col("policy_reason_flags").fill_null(reason),
    )
    return joined.select(list(dict.fromkeys([*frame.columns, *MAPPED_COLS])))


def _counts(frame: pl.DataFrame, col: str) -> list[dict[str, Any]]:
    """Rows per value of ``col`` as ``[{col: value, "rows": n}]``, sorted by value."""
    return frame.group_by(col).len(name="rows").sort(col).to_dicts()


def _allowed_classes(mode: str, default_classes: Iterable[str], include_watch: bool) -> set[str]:
    if mode == "all_states":
        return set(CLASSES)
    if mode == "allow_watch":
        return {"ALLOW", "WATCH"}
    allowed = {str(c).upper() for c in default_classes} or {"ALLOW"}
    return allowed | ({"WATCH"} if include_watch else set())


def map_states(
    frame: pl.DataFrame,
    input_type: str,
    *,
    flow_mapping: FlowMapping = FlowMapping(),
    hmm_directions: Mapping[int, str] | None = None,
    hmm_mapping_source: str = "none",
    cluster_policy: Mapping[str, Any] | None = None,
    policy_filter_mode: str = "allow_only",
    include_watch: bool = False,
    default_classes: Sequence[str] = ("ALLOW",),
    include_state_ids: Sequence[int] = (),
    allow_unconfirmed: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any] | None]:
    """Fill direction, class, score, reasons and ``signal_eligible`` (spec §1.2).

    Returns (frame, mapping summary, policy snapshot). FLOW uses ``flow_mapping``; HMM uses
    ``hmm_directions`` (from :func:`directions_from_state_map` or
    :func:`directions_from_scorecard`, named by ``hmm_mapping_source``) and, without any,
    raises unless ``allow_unconfirmed`` (then every row is UNCONFIRMED: zero trades); CLUSTER
    needs ``cluster_policy``, the ``cluster_hardening_policy.json`` payload. Eligibility:
    state in ``include_state_ids`` (when non-empty), class allowed by ``policy_filter_mode``
    (cluster only), and a LONG/SHORT direction, or UNCONFIRMED with ``allow_unconfirmed``.
    """
    if "state_id" not in frame.columns:
        raise ValueError("state mapping needs a state_id column (run adapter.normalize first)")
    mode = str(policy_filter_mode).strip().lower()
    if mode not in POLICY_FILTER_MODES:
        raise ValueError(f"policy_filter_mode must be one of {POLICY_FILTER_MODES}, got {mode!r}")
    snapshot: dict[str, Any] | None = None
    allowed: set[str] | None = None
    if input_type == "flow":
        entries: dict[int, tuple[str, str, float | None, str]] = {}
        for states, direction in ((flow_mapping.ignore_states, UNCONFIRMED),
                                  (flow_mapping.short_states, SHORT),
                                  (flow_mapping.long_states, LONG)):  # fmt: skip
            entries |= {int(s): (direction, "NA", None, "FLOW_DEFAULT_MAPPING") for s in states}
        out = _join_table(frame, entries, (UNCONFIRMED, "NA", "FLOW_UNMAPPED"))
        source = "flow_default"
    elif input_type == "hmm":
        if hmm_mapping_source not in HMM_MAPPING_SOURCES:
            raise ValueError(
                f"hmm_mapping_source must be one of {HMM_MAPPING_SOURCES}, "
                f"got {hmm_mapping_source!r}"
            )
        directions = {int(k): normalize_direction(v) for k, v in (hmm_directions or {}).items()}
        if directions and hmm_mapping_source == "none":
            raise ValueError("hmm_directions given with hmm_mapping_source='none'")
        if not directions and not allow_unconfirmed:
            raise ValueError(
                "HMM state directions are unknown: give a validation run's state scorecard "
                "(--validation-run-dir) or a state map (--state-map-file), or allow "
                "unconfirmed states (no trades)"
            )
        reason = f"HMM_MAPPING_{hmm_mapping_source}"
        entries = {k: (v, "NA", None, reason) for k, v in directions.items()}
        out = _join_table(frame, entries, (UNCONFIRMED, "NA", "HMM_UNMAPPED"))
        source = hmm_mapping_source
        snapshot = {"mapping_source": source, "direction_map": dict(sorted(directions.items()))}
    elif input_type == "cluster":
        if cluster_policy is None:
            raise ValueError(
                "CLUSTER input needs a cluster hardening policy (cluster_hardening_policy.json): "
                "run cluster-hardening-run first (`mf cluster-hardening-run`, or materialise "
                "the state_policy_cluster asset)"
            )
        out = _join_table(frame, _policy_entries(cluster_policy),
                          (UNCONFIRMED, "BLOCK", "CLUSTER_UNMAPPED"))  # fmt: skip
        source = "cluster_hardening_policy"
        allowed = _allowed_classes(mode, default_classes, include_watch)
        snapshot = dict(cluster_policy)
    else:
        raise ValueError(f"input_type must be flow, hmm or cluster, got {input_type!r}")

    hint = pl.col("state_direction_hint")
    eligible = hint.is_in([LONG, SHORT]) | (pl.lit(allow_unconfirmed) & (hint == UNCONFIRMED))
    if include_state_ids:
        eligible = eligible & pl.col("state_id").is_in([int(s) for s in include_state_ids])
    if allowed is not None:
        eligible = eligible & pl.col("state_class").is_in(sorted(allowed))
    out = out.with_columns(eligible.fill_null(False).alias("signal_eligible"))

    summary: dict[str, Any] = {
        "mapping_source": source,
        "eligible_rows": int(out["signal_eligible"].sum()),
        "direction_counts": _counts(out, "state_direction_hint"),
    }
    if allowed is not None:
        summary |= {
            "policy_filter_mode": mode,
            "class_counts": _counts(out, "state_class"),
            "allowed_classes": sorted(allowed),
        }
    return out, summary, snapshot
