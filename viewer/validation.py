"""The page's Validation tab: one source's recorded validation and policy of the ``full`` split.

The state scorecard with the policy's class, direction and reasons, each state's mean forward
return with its bootstrap CI, and the paths after the most frequent state transitions. An
in-sample run (the model fitted on the rows it is judged on) is labelled as such at the top.
Without a recorded validation the tab says what it looked for and how to produce it.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from viewer import registry
from viewer.data import Reader
from viewer.validation_chart import ci_figure, path_figure
from viewer.validation_data import (
    OUTCOME,
    SOURCES,
    ValidationRun,
    scorecard,
    transition_paths,
)

IN_SAMPLE_NOTE = (
    ":red-badge[IN-SAMPLE] The states were fitted on the same rows they are judged on "
    "(split `{split}`): the CIs, p-values and classes below describe how well the model "
    "describes its own sample, not how it would do on later data. Judge tradability on the "
    "walk-forward splits."
)
TABLE_COLUMNS: dict[str, Any] = {
    "state": st.column_config.TextColumn("state"),
    "n_rows": st.column_config.NumberColumn("rows", format="localized"),
    "mean": st.column_config.NumberColumn(f"{OUTCOME} mean", format="percent"),
    "ci_lo": st.column_config.NumberColumn("CI low", format="percent"),
    "ci_hi": st.column_config.NumberColumn("CI high", format="percent"),
    "edge_p_adjusted": None,  # labelled with the run's correction (Holm...) by ``section``
    "class": st.column_config.TextColumn("class"),
    "allow_direction_hint": st.column_config.TextColumn("direction"),
    "tradability_score": st.column_config.NumberColumn("tradability", format="%.1f"),
    "reasons": st.column_config.TextColumn("reasons", width="large"),
}


def display_table(card: pl.DataFrame) -> pl.DataFrame:
    """The scorecard as the tab shows it (columns of ``TABLE_COLUMNS``, in that order)."""
    names = registry.POLICY_CLASS_LABELS
    return card.select(
        "state", "n_rows",
        pl.col(f"{OUTCOME}_mean").alias("mean"),
        pl.col(f"{OUTCOME}_ci_lo").alias("ci_lo"),
        pl.col(f"{OUTCOME}_ci_hi").alias("ci_hi"),
        "edge_p_adjusted",
        pl.col("class_code").replace_strict(names, default=None, return_dtype=pl.String)
        .alias("class"),
        "allow_direction_hint", "tradability_score", "reasons",
    )  # fmt: skip


def _header(run: ValidationRun) -> None:
    if run.in_sample:
        st.markdown(IN_SAMPLE_NOTE.format(split=run.split))
    boot = run.summary.get("bootstrap") or {}
    bounds = run.summary.get("bounds") or {}
    st.caption(
        f"{SOURCES[run.source]} states, split `{run.split}`: {bounds.get('rows', 0):,} rows "
        f"from {bounds.get('min_trade_date')} to {bounds.get('max_trade_date')}; grade "
        f"{run.overall.get('validation_grade', 'n/a')}; {boot.get('n_boot')} "
        f"{boot.get('resample_unit', 'bootstrap')} resamples (block length "
        f"{boot.get('block_length')}), {boot.get('ci', 0):.0%} CIs, edge p-values "
        f"{boot.get('correction', '')}-adjusted, alpha {boot.get('alpha')}."
    )


def _transitions(run: ValidationRun, reader: Reader) -> None:
    st.markdown("**After a state transition**: mean cumulative return from the event bar")
    top = st.slider("Transitions shown (most events first)", 1, 10, 5,
                    key="validation_top_transitions")
    paths = transition_paths(run, int(top), reader)
    if paths.is_empty():
        st.info("This run's event study has no transition with enough events.")
        return
    st.plotly_chart(path_figure(paths), theme=None, key="validation_paths",
                    config={"displaylogo": False})


def section(runs: dict[str, ValidationRun], missing: dict[str, str], reader: Reader) -> None:
    """The tab for the source the user picks among ``runs`` (``missing``: why not others)."""
    st.subheader("Validation and policy")
    if not runs:
        st.info("No validation recorded yet for the `full` split. Run `mf demo` (or "
                "materialize `state_validation_<source>` and `state_policy_<source>` for "
                "`full`). Looked for: " + "; ".join(missing.values()))
        return
    source = st.selectbox("State source", list(runs), format_func=SOURCES.get,
                          index=list(runs).index("hmm") if "hmm" in runs else 0,
                          key="validation_source")
    run = runs[source]
    _header(run)
    for note in run.notes:
        st.info(f"No policy for these states yet: {note}.")
    card = scorecard(run, reader)
    correction = str((run.summary.get("bootstrap") or {}).get("correction", "adjusted"))
    columns = {**TABLE_COLUMNS, "edge_p_adjusted": st.column_config.NumberColumn(
        f"edge p ({correction.capitalize()})", format="%.3f")}
    st.dataframe(display_table(card), hide_index=True, column_config=columns)
    st.plotly_chart(ci_figure(card), theme=None, key="validation_ci",
                    config={"displaylogo": False})
    _transitions(run, reader)
    st.caption(f"Validation folder: `{run.folder}`" + (
        f"; policy: `{run.policy_dir}`" if run.policy_dir else ""))
    if missing:
        st.caption("Not validated: " + "; ".join(f"{SOURCES[s]}: {why}"
                                                  for s, why in missing.items()))
