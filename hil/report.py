"""What a HIL run leaves behind: JUnit XML for CI, a PNG per scenario and an index.html.

JUnit: one <testcase> per scenario (classname "hil.<file stem>"), <properties> with the scenario's
parameters ("param.*") and the measured figures ("measured.*"), <failure> with one line per broken
expectation (expected vs measured), <error> when the run itself broke, <skipped message=...> for
scenarios that need the simulator on a real rig. The <testsuite> properties record the setup: host,
Python, cementguard and protocol versions, time scale, port.
"""

from __future__ import annotations

import html
import os
import platform
import socket
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hil.outcome import Measured, Outcome

MEASURED_FIELDS = (
    ("final_state", "", "final state"),
    ("final_reason", "", "stop reason"),
    ("final_source", "", "stop source"),
    ("latency_ms", "ms", "detection latency"),
    ("after_flow_ml", "mL", "after-flow"),
    ("delivered_ml", "mL", "delivered (pump)"),
    ("delivered_truth_ml", "mL", "delivered (truth)"),
    ("peak_pressure_kpa", "kPa", "peak pressure"),
    ("false_stops", "", "false stops"),
    ("increments_done", "", "increments"),
    ("refused", "", "refused"),
    ("link_quality", "", "link"),
)


def setup_info(time_scale: float, port: str | None, jobs: int) -> dict[str, str]:
    """Where and how the corpus ran, recorded in the JUnit suite and the index page."""
    from host.cli import _version
    from protocol import PROTOCOL_VERSION

    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cementguard": _version(),
        "protocol_version": str(PROTOCOL_VERSION),
        "time_scale": f"{time_scale:g}" if port is None else "1 (real rig)",
        "port": port or "simulator (cementguard sim --pty, one per scenario)",
        "jobs": str(jobs),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _text(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def measured_properties(m: Measured) -> dict[str, str]:
    out = {f"measured.{name}": _text(getattr(m, name)) for name, _unit, _label in MEASURED_FIELDS}
    out["measured.latency_clock"] = _text(m.latency_clock)
    out["measured.trigger"] = _text(m.trigger)
    out["measured.onset_s"] = _text(m.onset_s)
    out["measured.stop_s"] = _text(m.stop_s)
    out["measured.timed_out"] = _text(m.timed_out)
    out["measured.stops"] = "; ".join(f"{t:.4f} s {r} ({s})" for t, r, s in m.stops) or "none"
    out["measured.onsets"] = "; ".join(f"{t:.4f} s {k}" for t, k in m.onsets) or "none"
    out["measured.wall_s"] = _text(m.wall_s)
    out.update(truth_properties(m))
    out["health.sim_overruns"] = _text(m.sim_overruns)
    out["health.sim_max_late_ms"] = _text(m.sim_max_late_ms)
    out["health.host_max_lag_ms"] = _text(m.host_max_lag_ms)
    out["health.host_max_lag_at_s"] = _text(m.host_max_lag_at_s)
    return out


def truth_properties(m: Measured) -> dict[str, str]:
    """The spatial body's ground truth ("truth.*"), when the run had one."""
    t = m.truth
    if t is None:
        return {}
    out = {
        "truth.t_s": _text(t.t_s),
        "truth.front_ap_fraction": _text(t.front_ap_fraction),
        "truth.posterior_quarter_t_s": _text(t.posterior_quarter_t_s),
        "truth.peak_temperature_c": _text(t.peak_temperature_c),
        "truth.canal_peak_c": _text(t.canal_peak_c),
        "truth.total_leak_ml": _text(t.leaked_ml),
    }
    for name, leak in t.leaks.items():
        out[f"truth.leak_ml.{name}"] = _text(leak.volume_ml)
        out[f"truth.leak_onset_s.{name}"] = _text(leak.onset_t_s)
    return out


def write_junit(outcomes: list[Outcome], path: Path, setup: dict[str, str]) -> Path:
    """The JUnit XML file (xml.etree; the schema CI servers read)."""
    suite = ET.Element(
        "testsuite",
        name="cementguard-hil",
        tests=str(len(outcomes)),
        failures=str(sum(o.status == "failed" for o in outcomes)),
        errors=str(sum(o.status == "error" for o in outcomes)),
        skipped=str(sum(o.status == "skipped" for o in outcomes)),
        time=f"{sum(o.measured.wall_s for o in outcomes):.3f}",
        timestamp=setup.get("started_utc", ""),
        hostname=setup.get("host", ""),
    )
    props = ET.SubElement(suite, "properties")
    for key, value in setup.items():
        ET.SubElement(props, "property", name=f"setup.{key}", value=value)
    for o in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"hil.{Path(o.path).stem}",
            name=o.name,
            time=f"{o.measured.wall_s:.3f}",
        )
        cprops = ET.SubElement(case, "properties")
        ET.SubElement(cprops, "property", name="scenario_file", value=o.path)
        ET.SubElement(cprops, "property", name="time_scale", value=f"{o.time_scale:g}")
        ET.SubElement(cprops, "property", name="port", value=o.port)
        if o.rerun:
            ET.SubElement(cprops, "property", name="rerun", value=o.rerun)
        for key, value in o.parameters.items():
            ET.SubElement(cprops, "property", name=f"param.{key}", value=value)
        if o.status != "skipped":
            for key, value in measured_properties(o.measured).items():
                ET.SubElement(cprops, "property", name=key, value=value)
        if o.status == "failed":
            first = o.message.splitlines()[0] if o.message else "failed"
            ET.SubElement(case, "failure", message=first, type="ExpectationFailed").text = o.message
        elif o.status == "error":
            ET.SubElement(
                case, "error", message=o.message.splitlines()[0] if o.message else "error"
            ).text = o.message
        elif o.status == "skipped":
            ET.SubElement(case, "skipped", message=o.message)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(suite)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return path


def plot_outcome(o: Outcome, png: Path) -> Path | None:
    """The scenario's figure: host.plot's pressure / volume / flow panels with limits and stops, plus
    the onset of every scenario event (dotted black) and stops only the simulator saw (a cut link)."""
    if o.recording is None or not Path(o.recording).exists():
        return None
    from host.plot import make_figure
    from host.recording import Recording

    rec = Recording.open(o.recording)
    fig = make_figure(rec)
    t0 = int(rec.sample_at(0)["t_us"]) / 1e6 if rec.sample_count else 0.0  # not the whole recording
    axes = fig.axes[:3]
    for t, kind in o.measured.onsets:
        for i, ax in enumerate(axes):
            ax.axvline(
                t - t0,
                color="black",
                ls=":",
                lw=1.4,
                gid="onset",
                label=f"{kind} (onset)" if i == 0 else None,
            )
    seen = {round(e.record.t_s, 3) for e in rec.stop_events()}
    for t, reason, _source in o.measured.stops:
        if round(t, 3) not in seen:
            for i, ax in enumerate(axes):
                ax.axvline(
                    t - t0,
                    color="tab:red",
                    lw=1.4,
                    gid="stop",
                    label=f"{reason} (simulator log)" if i == 0 else None,
                )
    if axes:
        axes[0].legend(loc="upper left", fontsize=8, framealpha=0.85)
    status = o.status.upper()
    title = fig.get_suptitle()  # host.plot's: recording, device, plan
    fig.suptitle(f"{o.name}: {status}\n{title}", fontsize=10)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80, format="png")
    return png


def write_index(outcomes: list[Outcome], report_dir: Path, setup: dict[str, str]) -> Path:
    """index.html: the setup, a pass/fail table with the figures, and each scenario's plot."""
    counts = {k: sum(o.status == k for o in outcomes) for k in ("passed", "failed", "error", "skipped")}
    colours = {"passed": "#1a7f37", "failed": "#cf222e", "error": "#9a6700", "skipped": "#57606a"}
    rows = []
    for o in outcomes:
        m = o.measured
        cells = "".join(
            f"<td>{html.escape(_text(getattr(m, name)))}</td>" for name, _u, _l in MEASURED_FIELDS
        )
        link = f'<a href="#{html.escape(o.name)}">{html.escape(o.name)}</a>'
        status = f'<td style="color:{colours[o.status]};font-weight:bold">{o.status}</td>'
        rows.append(f"<tr><td>{link}</td>{status}{cells}<td>{m.wall_s:.1f}</td></tr>")
    head = "".join(
        f"<th>{html.escape(label)}{f' ({unit})' if unit else ''}</th>" for _n, unit, label in MEASURED_FIELDS
    )
    sections = []
    for o in outcomes:
        text = "\n".join(x for x in (o.message, o.rerun) if x)
        msg = f"<pre>{html.escape(text)}</pre>" if text else ""
        img = ""
        if o.png:
            rel = os.path.relpath(o.png, report_dir)
            img = f'<img src="{html.escape(rel)}" alt="{html.escape(o.name)}" style="max-width:100%">'
        params = ", ".join(f"{html.escape(k)} = {html.escape(v)}" for k, v in o.parameters.items())
        truth = truth_properties(o.measured)
        truth_html = (
            "<p><b>ground truth (simulator, never telemetry):</b> "
            + ", ".join(
                f"{html.escape(k.removeprefix('truth.'))} = {html.escape(v)}" for k, v in truth.items()
            )
            + "</p>"
            if truth
            else ""
        )
        sections.append(
            f'<section id="{html.escape(o.name)}"><h2>{html.escape(o.name)}: '
            f'<span style="color:{colours[o.status]}">{o.status}</span></h2>'
            f"<p>{html.escape(o.description)}</p>"
            f"<p><small>{html.escape(o.path)}; time scale {o.time_scale:g}; {params}</small></p>"
            f"{truth_html}{msg}{img}</section>"
        )
    setup_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in setup.items()
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cementguard HIL report</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px}}pre{{background:#f6f8fa;padding:6px}}</style>
</head><body>
<h1>cementguard HIL report</h1>
<p>{counts["passed"]} passed, {counts["failed"]} failed, {counts["error"]} errors, {counts["skipped"]} skipped
of {len(outcomes)} scenarios.</p>
<table>{setup_rows}</table>
<h2>Scenarios</h2>
<table><tr><th>scenario</th><th>result</th>{head}<th>wall (s)</th></tr>
{"".join(rows)}
</table>
{"".join(sections)}
</body></html>
"""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
