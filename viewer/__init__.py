"""The overlay viewer: a Streamlit page that READS the lake and paints a ticker's layers.

``core`` (pure transforms), ``data`` (lake reads), ``registry`` (optional layers),
``sources`` (where optional layers live), ``chart`` (plotly), ``compute`` (Dagster
materialization), ``validation_data`` (the recorded validation and policy runs) and
``validation_chart`` (their strips and plots) import without Streamlit; ``app.py`` (the page)
and ``validation`` (its Validation tab) are the Streamlit code.
The viewer never re-implements a formula of a layer: every number it draws is read.
"""
