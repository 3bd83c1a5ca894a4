"""One-op jobs for validation work on folders and files rather than on assets: validate any
state-labelled file, QA / harden / compare any validation folder. The ``mf`` commands of the
old names run these, so each is a Dagster run in the UI with its options as typed config.
"""

from typing import Any

import dagster as dg

from mf_pipeline.defs.one_op import one_op_job
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.defs.validation.config import (
    CompareConfig,
    FileValidationConfig,
    FolderPolicyConfig,
    FolderQaConfig,
    HardeningCompareConfig,
)
from mf_pipeline.lib.steps.validation import compare_runs, folders, split_validation


def _one_folder(validation_run_dir: str | None, wf_run_dir: str | None) -> None:
    if bool(validation_run_dir) == bool(wf_run_dir):
        raise ValueError("give exactly one of --validation-run-dir / --wf-run-dir")


@dg.op
def validation_file_op(context: dg.OpExecutionContext, config: FileValidationConfig,
                       settings: PipelineSettings) -> dict[str, Any]:
    """Validate a state-labelled Parquet/CSV file (research.md §6.6)."""
    s = settings.get()
    out = split_validation.validate_file(
        s, config.input_file, config.options(s), input_type=config.input_type.value,
        state_col=config.state_col, sample_frac=config.sample_frac,
        date_from=config.date_from, date_to=config.date_to)
    context.add_output_metadata({"output_dir": dg.MetadataValue.path(str(out.output_dir)),
                                 "rows": out.summary["rows"],
                                 "validation_grade": out.summary.get("validation_grade")})
    return {"run_id": out.run_id, "output_dir": str(out.output_dir), **{
        k: out.summary.get(k) for k in ("input_type", "state_column", "rows", "state_count",
                                        "ticker_count", "validation_grade", "duration_sec")}}


@dg.op
def cluster_qa_op(config: FolderQaConfig, settings: PipelineSettings) -> dict[str, Any]:
    """QA flags of a validation folder, or of every split of a walk-forward folder (§8)."""
    _one_folder(config.validation_run_dir, config.wf_run_dir)
    qa = config.qa(settings.get())
    if config.validation_run_dir:
        return folders.qa_folder(config.validation_run_dir, qa)
    return folders.qa_wf_folder(config.wf_run_dir or "", qa)


@dg.op
def cluster_hardening_op(config: FolderPolicyConfig, settings: PipelineSettings
                         ) -> dict[str, Any]:  # fmt: skip
    """Tradable-state policy of a validation folder, or of every split of a walk-forward
    folder with the threshold recommendation (§9)."""
    _one_folder(config.validation_run_dir, config.wf_run_dir)
    s = settings.get()
    if config.validation_run_dir:
        return folders.policy_folder(config.validation_run_dir, config.qa(s),
                                     config.thresholds(s), config.clustered_rows_file,
                                     config.export_filtered, config.force, s.parquet)
    return folders.policy_wf_folder(config.wf_run_dir or "", config.qa(s), config.thresholds(s),
                                    config.force)


@dg.op
def validation_compare_op(config: CompareConfig, settings: PipelineSettings) -> dict[str, Any]:
    """Compare two validation runs, states matched by their outcome profiles (§6.8)."""
    return compare_runs.compare_validations(settings.get(), config.run_dir_a, config.run_dir_b)


@dg.op
def cluster_hardening_compare_op(config: HardeningCompareConfig, settings: PipelineSettings
                                 ) -> dict[str, Any]:  # fmt: skip
    """Compare two policies, states matched by their outcome profiles (§9.8)."""
    return compare_runs.compare_policies(settings.get(), config.hardening_dir_a,
                                         config.hardening_dir_b)


JOBS = [
    one_op_job("validation_file_run", validation_file_op, "mf validation-run --input-file"),
    one_op_job("cluster_qa_run", cluster_qa_op, "mf cluster-qa-run"),
    one_op_job("cluster_hardening_run", cluster_hardening_op, "mf cluster-hardening-run"),
    one_op_job("validation_compare", validation_compare_op, "mf validation-compare"),
    one_op_job("cluster_hardening_compare", cluster_hardening_compare_op,
         "mf cluster-hardening-compare"),
]
