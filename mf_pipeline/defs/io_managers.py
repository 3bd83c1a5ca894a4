"""Our IO manager: what one asset hands to the next, stored per asset and partition.

Where an asset's output feeds another asset (a fitted research model → its labels; later
validation → policy → backtest → candidates), the value goes through Dagster, so lineage is
Dagster's and the consumer loads exactly the output of the upstream partition it depends on —
never a "latest" pointer. Values are small records (dicts → JSON) or tables (polars → Parquet),
written atomically under ``<data_root>/_io/<asset key>/<partition>.{json,parquet}``.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib import lake

UNPARTITIONED = "__all__"


class LakeIOManager(dg.ConfigurableIOManager):
    """JSON for dict outputs, Parquet for polars frames; one file per asset partition."""

    settings: PipelineSettings

    def _file(self, key: dg.AssetKey, partition: str | None, suffix: str) -> Path:
        name = f"{partition or UNPARTITIONED}{suffix}"
        return self.settings.get().data_root / "_io" / Path(*key.path) / name

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        if isinstance(obj, pl.DataFrame):
            path = lake.write_parquet(obj, self._file(context.asset_key, partition, ".parquet"),
                                      self.settings.get().parquet)
            context.add_output_metadata({"io_path": dg.MetadataValue.path(str(path)),
                                         "io_rows": obj.height})
            return
        if not isinstance(obj, dict):
            raise TypeError(f"{context.asset_key}: the lake IO manager stores dicts and polars "
                            f"frames, not {type(obj).__name__}")
        path = lake.write_json(obj, self._file(context.asset_key, partition, ".json"))
        context.add_output_metadata({"io_path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        partition = context.asset_partition_key if context.has_asset_partitions else None
        for suffix, read in ((".parquet", pl.read_parquet),
                             (".json", lambda path: json.loads(path.read_text()))):
            path = self._file(key, partition, suffix)
            if path.exists():
                try:
                    return read(path)
                except Exception as error:
                    raise RuntimeError(f"cannot read {path}: {error}") from error
        where = self._file(key, partition, ".{json,parquet}")
        raise FileNotFoundError(f"no stored output of {key.to_user_string()}"
                                f"{f' [{partition}]' if partition else ''} at {where}: "
                                "materialize it first")
