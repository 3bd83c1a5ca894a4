"""The backtest's signal and exit modes, by name, in kernel-code order.

Kept apart from the Numba kernel module so that run config and grid parsing (imported when
the Dagster definitions load) name the modes without importing Numba: an `mf` command with
nothing to simulate does not pay ~0.3 s for it.
"""

SIGNAL_MODES = ("state_entry", "state_transition_entry", "state_persistence_confirm")
EXIT_MODES = ("horizon", "state_exit", "horizon_or_state")
