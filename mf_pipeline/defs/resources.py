"""Resources shared by every asset: the effective settings."""

import dagster as dg

from mf_pipeline.lib.settings import Settings, load_settings


class PipelineSettings(dg.ConfigurableResource):
    """Loads the effective settings (YAML + MF_PIPELINE_* env) once per run."""

    settings_file: str | None = None

    def get(self) -> Settings:
        return load_settings(self.settings_file)
