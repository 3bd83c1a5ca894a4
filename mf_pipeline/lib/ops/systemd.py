"""systemd user units for the nightly run (backtest_ops.md §11.4, fixing §13 fault 30).

Every command runs from the project's own virtual environment (``<project>/.venv/bin/...``),
never a system interpreter, which has none of the project's packages. Two ways to run nights:

- ``daemon``: a long-running ``dagster-daemon run`` service; the ``ops_nightly_schedule`` fires
  the nightly job (start the schedule once, in the UI or ``dagster schedule start``).
- ``timer``: a oneshot service calling ``mf ops-nightly-run`` plus a timer; no daemon needed,
  the run still shows in the UI (same instance).
"""

from __future__ import annotations

import re
from pathlib import Path

SERVICE_TIMER = "mf_pipeline_ops_nightly.service"
TIMER = "mf_pipeline_ops_nightly.timer"
SERVICE_DAEMON = "mf_pipeline_dagster_daemon.service"


def on_calendar(value: str, timezone: str) -> str:
    """systemd ``OnCalendar`` for ``value``: a bare ``HH:MM`` becomes weekdays at that time in
    ``timezone`` (like the Dagster schedule); anything else is used as written."""
    if re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        return f"Mon..Fri *-*-* {value.strip()}:00 {timezone}"
    return value


def _environment(dagster_home: Path) -> str:
    return f"Environment=DAGSTER_HOME={dagster_home}\nEnvironment=PYTHONUNBUFFERED=1\n"


def timer_service(project_root: Path, dagster_home: Path,
                  extra_args: tuple[str, ...] = ()) -> str:  # fmt: skip
    """A oneshot service running ``mf ops-nightly-run`` from the project's venv."""
    command = " ".join([str(project_root / ".venv" / "bin" / "mf"), "ops-nightly-run",
                        *extra_args])
    return (
        "[Unit]\nDescription=mf_pipeline nightly research ops (lake update, candidate re-run, "
        "ledger)\nAfter=network-online.target\n\n"
        f"[Service]\nType=oneshot\nWorkingDirectory={project_root}\n"
        f"{_environment(dagster_home)}ExecStart={command}\n\n"
        "[Install]\nWantedBy=default.target\n"
    )


def timer(calendar: str) -> str:
    """The timer that starts :data:`SERVICE_TIMER`; ``Persistent`` runs a night missed while the
    machine was off at the next boot."""
    return (
        "[Unit]\nDescription=mf_pipeline nightly research ops, every weekday\n\n"
        f"[Timer]\nOnCalendar={calendar}\nPersistent=true\nUnit={SERVICE_TIMER}\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )


def daemon_service(project_root: Path, dagster_home: Path) -> str:
    """A long-running ``dagster-daemon run`` from the project's venv on the project's
    workspace and instance: it fires the schedule and the run-failure sensor."""
    daemon = project_root / ".venv" / "bin" / "dagster-daemon"
    return (
        "[Unit]\nDescription=mf_pipeline Dagster daemon (schedules and sensors, incl. the "
        "nightly ops)\nAfter=network-online.target\n\n"
        f"[Service]\nType=simple\nWorkingDirectory={project_root}\n"
        f"{_environment(dagster_home)}ExecStart={daemon} run -w {project_root / 'workspace.yaml'}"
        "\nRestart=on-failure\nRestartSec=30\n\n"
        "[Install]\nWantedBy=default.target\n"
    )


def units(mode: str, project_root: Path, dagster_home: Path, calendar: str,
          extra_args: tuple[str, ...] = ()) -> dict[str, str]:  # fmt: skip
    """File name → text of the units of ``mode`` (``timer`` or ``daemon``)."""
    if mode == "timer":
        return {SERVICE_TIMER: timer_service(project_root, dagster_home, extra_args),
                TIMER: timer(calendar)}
    if mode == "daemon":
        return {SERVICE_DAEMON: daemon_service(project_root, dagster_home)}
    raise ValueError(f"unknown mode {mode!r}: timer or daemon")


def install_hints(paths: list[Path]) -> list[str]:
    """The commands that install the written units for the current user."""
    names = [p.name for p in paths]
    enable = next((n for n in names if n.endswith(".timer")), names[0])
    return ["mkdir -p ~/.config/systemd/user",
            "cp " + " ".join(map(str, paths)) + " ~/.config/systemd/user/",
            "systemctl --user daemon-reload",
            f"systemctl --user enable --now {enable}",
            "loginctl enable-linger $USER   # so it runs while you are logged out",
            f"journalctl --user -u {names[0]} -f"]
