"""Shared benchmark plumbing: machine facts, load accounting, peak RSS, child processes.

Every measurement records the load average before and after and ``others_cpu_frac``, the share
of all CPU time used by *other* processes while it ran (this machine is shared), and
``steal_frac``, the share the hypervisor gave to other guests, so a slow number can be read
as "slow" or "contended".
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_ROOT / "bench"
CACHE_DIR = BENCH_DIR / "cache"
MB = 1024 * 1024
LIBRARIES = ("mf-pipeline", "dagster", "polars", "numpy", "numba", "llvmlite", "pyarrow",
             "duckdb", "ta-lib", "psutil", "pydantic", "xxhash")


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _filesystem(path: Path) -> dict[str, str]:
    """Device and type of the file system holding ``path`` (the longest matching mount)."""
    best: Any = None
    target = str(path.resolve())
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and (
            best is None or len(mount) > len(best.mountpoint)
        ):
            best = part
    if best is None:
        return {}
    return {"mount": best.mountpoint, "device": best.device, "fstype": best.fstype}


CPU_PROBE_STEPS = 2_000_000


def cpu_probe_ms(steps: int = CPU_PROBE_STEPS, repeat: int = 3) -> float:
    """Best-of-``repeat`` milliseconds of a fixed pure-Python loop: this shared VM's speed
    varies by day (the same commit measured ~2x apart), so every entry records how fast one
    core was when it ran."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        total = 0
        for step in range(steps):
            total += step
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def machine_info(path: Path = BENCH_DIR) -> dict[str, Any]:
    """Cores, RAM, CPU model, kernel, Python, file system, the load average and the speed of
    one core now (:func:`cpu_probe_ms`)."""
    vm = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": round(vm.total / 1024**3, 1),
        "ram_available_gib": round(vm.available / 1024**3, 1),
        "swap_gib": round(psutil.swap_memory().total / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "thp": _read_text("/sys/kernel/mm/transparent_hugepage/enabled"),
        "filesystem": _filesystem(path),
        "loadavg": list(os.getloadavg()),
        "cpu_probe_ms": cpu_probe_ms(),
        "cpu_probe_steps": CPU_PROBE_STEPS,
    }


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed distribution versions (None when not installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# --------------------------------------------------------------------------- load, CPU, RSS


def _busy_cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of all processes, hypervisor steal seconds) since boot."""
    t = psutil.cpu_times()
    steal = getattr(t, "steal", 0.0)
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - steal, steal


@dataclass
class Meter:
    """Wall, own CPU, load and other processes' CPU share over one measured interval.

    ``own_cpu`` is this process's CPU (all threads) unless ``children`` is set, in which case
    the CPU of reaped child processes is used (set ``child_cpu_s`` after the child ends).
    """

    children: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    others_cpu_frac: float = 0.0
    steal_frac: float = 0.0
    child_cpu_s: float | None = None

    def __enter__(self) -> Meter:
        self.load_before = [round(x, 2) for x in os.getloadavg()]
        self._busy = _busy_cpu_seconds()
        self._cpu = time.process_time()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t
        own = time.process_time() - self._cpu
        if self.children:
            own = self.child_cpu_s or 0.0
        self.cpu_s = own
        busy, steal = (a - b for a, b in zip(_busy_cpu_seconds(), self._busy, strict=True))
        capacity = max(self.wall_s * (os.cpu_count() or 1), 1e-9)
        self.others_cpu_frac = round(min(max(0.0, busy - own) / capacity, 1.0), 3)
        self.steal_frac = round(min(steal / capacity, 1.0), 3)
        self.load_after = [round(x, 2) for x in os.getloadavg()]

    def record(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "others_cpu_frac": self.others_cpu_frac,
            "steal_frac": self.steal_frac,
        }


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS of this process since start or since the last :func:`reset_peak_rss`."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


# --------------------------------------------------------------------------- child processes


@dataclass
class ChildResult:
    """A finished child process: exit code, own CPU and peak RSS (from ``wait4``), output."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    lines: list[tuple[float, str]]
    stderr: str
    meter: dict[str, Any]

    @property
    def stdout(self) -> str:
        return "\n".join(text for _, text in self.lines)


def run_child(cmd: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path = PROJECT_ROOT, echo: bool = False,
              merge_stderr: bool = False) -> ChildResult:
    """Run ``cmd``, timestamping each stdout line (stderr's too with ``merge_stderr``: ``mf``
    prints its progress there); CPU and peak RSS are the child's own."""
    full_env = dict(os.environ if env is None else env)
    err_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-stderr-{os.getpid()}.txt"
    lines: list[tuple[float, str]] = []
    meter = Meter(children=True)
    with meter, open(err_path, "w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, cwd=cwd, env=full_env,
                                stderr=subprocess.STDOUT if merge_stderr else err, text=True,
                                bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            if echo:
                print(f"    | {line.rstrip()}", flush=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        meter.child_cpu_s = usage.ru_utime + usage.ru_stime
        err.seek(0)
        stderr = err.read()
    err_path.unlink(missing_ok=True)
    return ChildResult(
        returncode=proc.returncode, wall_s=wall, user_s=usage.ru_utime, sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024, lines=lines, stderr=stderr, meter=meter.record(),
    )


def run_json_child(module: str, args: Sequence[str], env: Mapping[str, str] | None = None,
                   tmp: Path | None = None) -> dict[str, Any]:
    """Run ``python -m module args --json FILE`` and return the JSON it wrote (+ child facts)."""
    tmp = tmp or Path(os.environ.get("TMPDIR", "/tmp"))
    out = tmp / f"bench-{module.rsplit('.', 1)[-1]}-{os.getpid()}-{time.time_ns()}.json"
    child = run_child([sys.executable, "-m", module, *args, "--json", str(out)], env=env)
    if child.returncode != 0:
        raise RuntimeError(f"{module} failed ({child.returncode}):\n{child.stderr[-4000:]}")
    payload = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    payload["process"] = {"wall_s": child.wall_s, "cpu_s": child.user_s + child.sys_s,
                          "peak_rss_mb": child.peak_rss_mb, **child.meter}
    return payload


# --------------------------------------------------------------------------- aggregation


def median_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Field-wise median of numeric fields; other fields from the first record.

    Load fields keep every run's values (a list per run) so contention stays visible.
    """
    if not records:
        return {}
    merged: dict[str, Any] = {}
    for key, first in records[0].items():
        values = [r.get(key) for r in records]
        if key in ("load_before", "load_after"):
            merged[key] = values
        elif isinstance(first, bool) or not isinstance(first, int | float):
            merged[key] = first
        else:
            nums = [v for v in values if isinstance(v, int | float)]
            merged[key] = statistics.median(nums) if nums else None
    merged["n"] = len(records)
    return merged


def rounded(obj: Any, digits: int = 4) -> Any:
    """Floats rounded to ``digits`` significant digits (stable, readable JSON)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if obj == obj else None
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_json(payload: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def last_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object printed at the end of ``text`` (starts at a line holding only ``{``)."""
    starts = [m.start() for m in re.finditer(r"(?m)^\{\s*$", text)]
    for start in reversed(starts):
        try:
            value = json.loads(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value
