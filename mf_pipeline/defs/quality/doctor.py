"""The lake doctor: every file of the lake read and checked, optionally repaired (``mf doctor``)."""

import dagster as dg

from mf_pipeline.defs.partitions import layer_run_id
from mf_pipeline.defs.resources import PipelineSettings
from mf_pipeline.lib import doctor, lake, registry


class DoctorConfig(dg.Config):
    repair: bool = False
    """Quarantine broken derived files and state so that the next run rebuilds them."""


@dg.asset(deps=list(registry.LAYERS), group_name="quality", kinds={"parquet"})
def lake_doctor(context: dg.AssetExecutionContext, config: DoctorConfig,
                settings: PipelineSettings) -> dg.MaterializeResult:
    """Reads every lake file after the layers are built (Parquet footers and schemas of every
    per-ticker part, carries, settings records, manifests, ledger and rejects, ML dataset
    exports), checks that the
    ledger reconciles, and reports per problem the file and what is wrong; with `repair`,
    quarantines what is broken so that the next `mf run` rebuilds it (lib/doctor.py). The
    whole report goes to `artifacts/doctor/`."""
    cfg = settings.get()
    report = doctor.diagnose(cfg, repair=config.repair)
    payload = report.as_dict()
    path = lake.write_json(payload, cfg.artifacts_root / "doctor"
                           / f"{layer_run_id(context.run_id, 'doctor')}_report.json")
    for problem in report.problems[:50]:
        context.log.info(f"{problem.path}: {problem.what}"
                         + (f" [{problem.repair}]" if problem.repair else ""))
    return dg.MaterializeResult(metadata={
        "ok": payload["ok"],
        "problem_count": payload["problem_count"],
        "repaired_count": payload["repaired_count"],
        "remaining_count": payload["remaining_count"],
        "files_checked": payload["files_checked"],
        "problems": payload["problems"][:doctor.REPORT_LIMIT],
        "next_steps": payload["next_steps"],
        "quarantine": payload["quarantine"] or "",
        "path": str(path),
        "seconds": payload["seconds"],
    })
