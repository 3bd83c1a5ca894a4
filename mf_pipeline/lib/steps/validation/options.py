"""The options of one validation run: settings defaults (``validation``, ``cluster_qa``,
``cluster_hardening``) with the run's overrides, and their digest.

The digest names the run folder and is recorded in every summary, so an output is reused only
when it was built with the same options (the old tool reused folders whatever their config).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from mf_pipeline.lib.settings import Settings


def digest(payload: Any, size: int = 12) -> str:
    """Short SHA-1 of the canonical JSON of ``payload`` (sorted keys, strings for the rest)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:size]


@dataclass(frozen=True)
class ValidationOptions:
    """Everything a validation run computes with (spec research.md §6, plus ours)."""

    n_boot: int = 1000
    ci: float = 0.95
    bootstrap_mode: str = "block"
    block_length: int | None = None
    random_state: int = 42
    alpha: float = 0.05
    max_points_per_state: int = 50_000
    window_pre: int = 10
    window_post: int = 20
    min_events_per_transition: int = 50
    max_gap_days: int = 7
    window_months: int = 12
    step_months: int = 3
    eps: float = 1e-12
    weights: dict[str, float] = field(default_factory=dict)
    write_large_artifacts: bool = False

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        return digest(self.payload())

    def check(self) -> None:
        """Refuse values the spec's CLI refuses, naming the option."""
        if self.n_boot < 10:
            raise ValueError(f"--bootstrap-n must be >= 10, got {self.n_boot}")
        if not 0 < self.ci < 1:
            raise ValueError(f"--bootstrap-ci must be in (0, 1), got {self.ci}")
        if self.bootstrap_mode not in ("block", "circular", "iid"):
            raise ValueError("--bootstrap-mode must be one of block/circular/iid, "
                             f"got {self.bootstrap_mode!r}")
        if self.block_length is not None and self.block_length < 1:
            raise ValueError(f"--block-length must be >= 1, got {self.block_length}")
        for name in ("window_months", "step_months", "window_post", "min_events_per_transition"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.window_pre < 0:
            raise ValueError("--event-window-pre must be >= 0")


def validation_options(settings: Settings, **overrides: Any) -> ValidationOptions:
    """Settings defaults with the non-None ``overrides`` (names of :class:`ValidationOptions`)."""
    v = settings.validation
    base = ValidationOptions(
        n_boot=v.bootstrap.n_boot, ci=v.bootstrap.ci, bootstrap_mode=v.bootstrap.mode,
        block_length=v.bootstrap.block_length, random_state=v.bootstrap.random_state,
        alpha=v.bootstrap.alpha, max_points_per_state=v.bootstrap.max_points_per_state,
        window_pre=v.event_study.window_pre, window_post=v.event_study.window_post,
        min_events_per_transition=v.event_study.min_events_per_transition,
        max_gap_days=v.event_study.max_gap_days,
        window_months=v.rolling_stability.window_months,
        step_months=v.rolling_stability.step_months,
        eps=v.scorecard.eps, weights=dict(v.scorecard.weights),
        write_large_artifacts=v.io.write_large_artifacts_default,
    )  # fmt: skip
    known = {f.name for f in fields(ValidationOptions)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown validation options: {sorted(unknown)}")
    options = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    options.check()
    return options
