"""The overlay viewer: a Streamlit page that READS the lake and paints a ticker's layers.

``core`` (pure transforms), ``data`` (lake reads), ``registry`` (optional layers),
``sources`` (where optional layers live), ``chart`` (plotly) and ``compute`` (Dagster
materialization) import without Streamlit; only ``app.py`` is a Streamlit script.
The viewer never re-implements a formula of a layer: every number it draws is read.
"""
