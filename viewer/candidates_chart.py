"""What the page says about the production candidates above the chart: which pack and nightly
re-run it shows, a drift badge per candidate, and where the candidate layers come from.

The markers and the band themselves are registry layers (``registry.CANDIDATE_LAYERS``) drawn
by :mod:`viewer.chart` like every other layer.
"""

from __future__ import annotations

from mf_pipeline.lib.settings import Settings
from viewer.candidates_data import CandidateSet, band_origin, exec_candidate, load_candidates

BADGE_COLORS: dict[str, str] = {
    "OK": "green", "DRIFT_WARN": "orange", "DRIFT_FAIL": "red", "ERROR": "violet",
}  # fmt: skip


def badge(status: str | None) -> str:
    """A Streamlit badge of a drift status (grey ``not re-run`` without one)."""
    if status is None:
        return ":gray-badge[not re-run]"
    return f":{BADGE_COLORS.get(status, 'gray')}-badge[{status}]"


def status_markdown(found: CandidateSet, policy_what: str) -> str | None:
    """One line: the pack and re-run shown, each candidate with its drift badge (and the
    flags that set it), and where the band and the execution gates come from. None without
    any candidate."""
    if not found.candidates:
        return None
    where = f"pack `{found.pack_dir.name}`" if found.pack_dir else "no pack"
    if found.rerun_dir is not None:
        where += f"; nightly re-run `{found.rerun_dir.name}` as of {found.as_of or '?'}"
    else:
        where += "; not re-run yet (trades of the lock-time backtests)"
    parts = []
    for label, c in sorted(found.candidates.items()):
        flags = f" ({', '.join(c.drift_flags)})" if c.drift_flags else ""
        parts.append(f"{label} {badge(c.drift_status)}{flags}")
    chosen = exec_candidate(found)
    gates = (f"{chosen.label} (profile `{chosen.exec_profile}`)" if chosen
             else "no candidate with an execution profile")
    return (f"**Candidates** ({where}): " + " · ".join(parts)
            + f"  \nState-policy band: {policy_what}. Execution gates: {gates}.")


def status_line(settings: Settings) -> str | None:
    """:func:`status_markdown` of the latest pack and re-run."""
    found = load_candidates(settings)
    if not found.candidates:
        return None
    return status_markdown(found, band_origin(settings, found))
