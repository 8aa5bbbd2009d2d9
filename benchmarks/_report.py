"""What a run prints and saves: the machine, the versions, the tables, a JSON file and a chart."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

# What moves a CPU figure: the HTTP stack under the library, the decoder, and whether httpcore
# finds sniffio (without it every request retries a failed import: issue 27).
PACKAGES = (
    "flowmusic-async",
    "httpx",
    "httpcore",
    "anyio",
    "sniffio",
    "msgspec",
    "backoff",
    "pydantic",
    "matplotlib",
)
# The ones the one-line summary names (the others stay in the JSON).
KEY_PACKAGES = ("httpx", "httpcore", "anyio", "msgspec")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        pass
    if package == "flowmusic-async":  # run from a checkout without `pip install -e .`
        try:
            import flowmusic_async

            return f"{flowmusic_async.__version__} (source tree)"
        except (ImportError, AttributeError):
            pass
    return "not installed"


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except OSError:
        return "unknown"
    return out.stdout.strip() or "no commits yet"


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load (empty where the OS has none): how busy the machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    """The machine and software a result belongs to (numbers mean nothing without it).

    Every benchmark script stores this under "machine" in its JSON and prints
    `machine_lines()` first; `environment_line()` is its one-line summary.
    """
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "platform": platform.platform(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {name: _version(name) for name in PACKAGES},
        # Importable by this interpreter, the one every variant and client process runs on.
        "sniffio_importable": importlib.util.find_spec("sniffio") is not None,
        "load_average": load_average(),
        "git": _git_revision(),
    }


def environment_line(info: dict[str, Any]) -> str:
    """One line to compare a machine with another: Python, the HTTP stack, cores, load."""
    versions = ", ".join(f"{name} {info['versions'].get(name, '?')}" for name in KEY_PACKAGES)
    sniffio = "sniffio importable" if info.get("sniffio_importable") else "NO sniffio"
    load = " ".join(f"{x:.2f}" for x in info.get("load_average", [])) or "unknown"
    return (
        f"env: {info['python']}; {versions}; {sniffio}; "
        f"{info['logical_cores']} cores, {info.get('system', info['platform'])}; load {load}"
    )


def machine_lines(info: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    cores = f"{info['logical_cores']} logical"
    if info.get("physical_cores"):
        cores += f" / {info['physical_cores']} physical"
    return [
        environment_line(info),
        f"machine: {info['cpu']} ({cores} cores), {info['platform']}",
        f"python:  {info['python']}; git {info['git']}",
        f"versions: {versions}",
    ]


def print_machine() -> dict[str, Any]:
    """`machine()`, printed first (before anything is measured); returns it for the JSON."""
    info = machine()
    print("\n".join(machine_lines(info)), flush=True)
    return info


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x" if value / base < 100 else f"{value / base:.0f}x"


COLUMNS = (
    ("variant", 16),
    ("makespan/ideal", 14),
    ("vs lib", 7),
    ("/FIFO", 6),
    ("first result s", 14),
    ("vs lib", 7),
    ("notice p50/p95 s", 17),
    ("req/song", 8),
    ("429/song", 8),
    ("CPU ms/song", 11),
    ("vs lib", 7),
    ("RSS MB", 7),
    ("lost/dup", 8),
)


def workload_table(workload: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[str]:
    """One workload: a header line, then one row per variant with ratios against `library`."""
    base = rows.get("library", {}).get("metrics") or {}
    first: dict[str, Any] = next((r["metrics"] for r in rows.values() if r.get("metrics")), {})
    lines = [
        f"{workload['name']}: {workload['songs']} songs, {len(workload['accounts'])} accounts, "
        f"{workload['slots']} slots"
        + (f", {workload['rate_per_s']:.3f} songs/s arriving" if workload["rate_per_s"] else "")
        + f"; ideal {_fmt(first.get('ideal_sim_s'), 0)} s, "
        f"zero-latency FIFO {_fmt(first.get('fifo_sim_s'), 0)} s (simulated)",
        "  ".join(name.ljust(width) for name, width in COLUMNS),
    ]
    for variant, row in rows.items():
        m = row.get("metrics")
        if not m:
            lines.append(f"{variant.ljust(16)}  FAILED: {row.get('error')}")
            continue
        cells = (
            variant,
            _fmt(m["makespan_over_ideal"], 3),
            _ratio(m["makespan_sim_s"], base.get("makespan_sim_s")),
            _fmt(m["makespan_over_fifo"], 3),
            _fmt(m["first_result_sim_s"], 1),
            _ratio(m["first_result_sim_s"], base.get("first_result_sim_s")),
            f"{_fmt(m['notice_p50_sim_s'], 1)} / {_fmt(m['notice_p95_sim_s'], 1)}",
            _fmt(m["requests_per_song"], 2),
            _fmt(m["r429_per_song"], 2),
            _fmt(m["cpu_ms_per_song"], 2),
            _ratio(m["cpu_ms_per_song"], base.get("cpu_ms_per_song")),
            _fmt(m["peak_rss_mb"], 0),
            f"{m['lost']}/{m['duplicates']}",
        )
        lines.append("  ".join(str(c).ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
        for note in row.get("notes", []):
            lines.append(f"{'':16}  note: {note}")
    return lines


def decode_table(decode: dict[str, dict[str, float]]) -> list[str]:
    if not decode:
        return ["decode: not run"]
    base = decode.get("msgspec", {})
    lines = ["decode one job record (us per decode, best of rounds; each in its own process)"]
    lines.append(f"{'impl':10}  {'completed (2 clips)':>20}  {'vs msgspec':>10}  "
                 f"{'pending':>8}  {'vs msgspec':>10}")  # fmt: skip
    for impl, us in decode.items():
        done_ratio = _ratio(us["completed"], base.get("completed"))
        pending_ratio = _ratio(us["pending"], base.get("pending"))
        lines.append(
            f"{impl:10}  {us['completed']:>20.2f}  {done_ratio:>10}"
            f"  {us['pending']:>8.2f}  {pending_ratio:>10}"
        )
    return lines


def _figure(metrics: dict[str, Any], key: str, digits: int) -> str:
    """`value [low-high]` when the runs differ, else `value`; '-' when missing."""
    value = metrics.get(key)
    if value is None:
        return "-"
    low, high = metrics.get("range", {}).get(key, [value, value])
    text = f"{value:.{digits}f}"
    if f"{low:.{digits}f}" != f"{high:.{digits}f}":
        text += f" [{low:.{digits}f}-{high:.{digits}f}]"
    if low and high / low > 2:  # a figure that moves this much is not one number
        text += " (>2x apart)"
    return text


def lone_song(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tracked figure: client CPU and API requests for one song, per variant.

    The library sweeps every `poll_interval` (3 s) from 20 s after acceptance, to notice the
    end within about 2 s, so a lone song costs it more requests and CPU than a 15 s poller;
    this figure keeps that cost in view from run to run.
    """
    out: dict[str, dict[str, Any]] = {}
    for workload in result.get("workloads", []):
        if workload["workload"]["name"] != "single":
            continue
        for variant, row in workload["variants"].items():
            m = row.get("metrics")
            if not m:
                continue
            ranges = m.get("range", {})
            out[variant] = {
                "runs": len(row.get("runs") or [m]),
                "cpu_ms": m["cpu_ms_per_song"],
                "cpu_ms_range": ranges.get("cpu_ms_per_song"),
                "requests": m["requests_per_song"],
                "requests_range": ranges.get("requests_per_song"),
                "notice_sim_s": m["notice_p50_sim_s"],
            }
    return out


SUMMARY_COLUMNS = (("", 29), ("CPU ms/song", 21), ("vs lib", 6), ("req/song", 20),
                   ("makespan/ideal", 14), ("first s", 7), ("lost/dup", 8))  # fmt: skip


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One screen: the environment, each variant's key figures, the lone song, the decoder."""
    info = result["machine"]
    loads = [
        row["load_before"]
        for workload in result.get("workloads", [])
        for runs in workload["variants"].values()
        for row in runs.get("tries", [runs])
        if row.get("load_before") is not None
    ]
    load = f"{min(loads):.2f}-{max(loads):.2f}" if loads else "-"
    single_ran = any(w["workload"]["name"] == "single" for w in result.get("workloads", []))
    lines = [
        "=" * 30 + " summary " + "=" * 30,
        environment_line(info),
        f"git {info['git']}; {result['mode']} run, time scale {result['time_scale']}, "
        f"seed {result['seed']}, median [range] of {result.get('repeats', 1)} run(s)"
        + (f" (the lone song: {result.get('single_repeats', 1)})" if single_ran else "")
        + f"; 1-min load before runs {load}",
        "  ".join(name.ljust(width) for name, width in SUMMARY_COLUMNS),
    ]
    for workload in result.get("workloads", []):
        w = workload["workload"]
        base = workload["variants"].get("library", {}).get("metrics") or {}
        for variant, row in workload["variants"].items():
            m = row.get("metrics")
            label = f"{w['name']} ({w['songs']}) {variant}"
            if not m:
                lines.append(f"{label:<29}  FAILED: {row.get('error')}")
                continue
            cells = (
                label,
                _figure(m, "cpu_ms_per_song", 1),
                _ratio(m["cpu_ms_per_song"], base.get("cpu_ms_per_song")),
                _figure(m, "requests_per_song", 2),
                _fmt(m["makespan_over_ideal"], 3),
                _fmt(m["first_result_sim_s"], 0),
                f"{m['lost']}/{m['duplicates']}",
            )
            widths = (width for _, width in SUMMARY_COLUMNS)
            lines.append("  ".join(str(c).ljust(n) for c, n in zip(cells, widths, strict=True)))
    single = result.get("tracked", {}).get("lone_song", {})
    lib, script = single.get("library"), single.get("official_script")
    if lib:
        text = (
            f"lone song (tracked): library {lib['cpu_ms']:.1f} ms CPU,"
            f" {lib['requests']:.0f} requests"
        )
        if script:
            text += (
                f"; official script {script['cpu_ms']:.1f} ms, {script['requests']:.0f} requests"
                f" ({lib['cpu_ms'] / script['cpu_ms']:.1f}x the CPU for"
                f" {lib['requests'] / script['requests']:.1f}x the requests: 3 s sweeps"
                " against 15 s polls)"
            )
        lines.append(text)
    decode = result.get("decode") or {}
    if "msgspec" in decode:
        ratios = ", ".join(
            f"{impl} {us['completed'] / decode['msgspec']['completed']:.2f}x"
            for impl, us in decode.items()
            if impl != "msgspec"
        )
        lines.append(
            f"decode (completed record): msgspec {decode['msgspec']['completed']:.2f} us; {ratios}"
        )
    return lines


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")


CHART_METRICS = (
    ("makespan_over_ideal", "makespan / ideal", False),
    ("first_result_sim_s", "time to first result (s)", True),
    ("notice_p50_sim_s", "completion notice p50 (s)", True),
    ("requests_per_song", "HTTP requests per song", True),
    ("cpu_ms_per_song", "client CPU ms per song", True),
    ("peak_rss_mb", "peak RSS (MB)", False),
)


def chart(path: Path, result: dict[str, Any]) -> str:
    """A PNG of the main metrics per workload and variant; returns a note for the output."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "chart skipped: matplotlib is missing (nox -s bench installs it)"
    workloads = result["workloads"]
    fig, axes = plt.subplots(
        len(workloads), len(CHART_METRICS),
        figsize=(3.2 * len(CHART_METRICS), 2.6 * len(workloads)), squeeze=False,
    )  # fmt: skip
    for row, workload in enumerate(workloads):
        runs = workload["variants"]
        names = [n for n, r in runs.items() if r.get("metrics")]
        for col, (key, label, log) in enumerate(CHART_METRICS):
            ax = axes[row][col]
            values = [runs[n]["metrics"].get(key) or 0.0 for n in names]
            colors = ["tab:green" if n == "library" else "tab:gray" for n in names]
            bars = ax.bar(range(len(names)), values, color=colors)
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
            ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=7)
            # A log axis only where the variants differ by orders of magnitude.
            if log and all(v > 0 for v in values) and max(values) > 30 * min(values):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(f"{workload['workload']['name']}: {label}", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"flowmusic-async benchmarks ({result['mode']}), {result['machine']['cpu']}",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path}"
