"""Sensitivity grids (issue #21): run many backtest combos, then judge the best one honestly."""
