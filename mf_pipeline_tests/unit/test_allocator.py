"""Importing mf_pipeline sets Polars' jemalloc decay (mf_pipeline/__init__.py) before Polars
loads, and keeps a user's own setting."""

import os
import subprocess
import sys

PROBE = ("import os, mf_pipeline\n"
         "os.environ['_RJEM_MALLOC_CONF'] += ',stats_print:true'\n"
         "import polars as pl\npl.DataFrame({'a': [1]})\n")


def decay_in_effect(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, check=True)
    line = next(x for x in done.stderr.splitlines() if "opt.dirty_decay_ms" in x)
    return line.split(":", 1)[1].split()[0]


def test_the_package_keeps_freed_pages_three_seconds():
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    assert decay_in_effect(env) == "3000"  # Polars alone: 500


def test_a_users_allocator_setting_is_kept():
    assert decay_in_effect(os.environ | {"_RJEM_MALLOC_CONF": "dirty_decay_ms:700"}) == "700"
