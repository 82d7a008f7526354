"""The investigation report as one self-contained HTML page.

Everything is inline (CSS, the plot as a PNG data URL, thumbnails as JPEG data URLs); the page has no
script and a Content-Security-Policy that forbids network loads, so it opens from disk anywhere.
All text that came from a user or a model (video names, rules, captions, reasons, judgments) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path

from sleuth import __version__
from sleuth.records import DetectReport, Explanation, FrameScore, Judgment, VideoEvent
from sleuth.reports.files import atomic_write_text
from sleuth.reports.plot import score_plot_png
from sleuth.reports.summary import findings

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_html(report: DetectReport, path: str | os.PathLike[str]) -> Path:
    """Write the report page to ``path`` (atomically; parent folders are created)."""
    return atomic_write_text(path, render_html(report))


def render_html(report: DetectReport) -> str:
    """The report page as a string."""
    by_index = {frame.index: frame for frame in report.frames}
    plot = base64.b64encode(score_plot_png(report)).decode("ascii")
    sections = [
        _header(report),
        *([_warnings(report.warnings)] if report.warnings else []),
        '<section class="plot"><h2>Scores over time</h2>'
        f'<img src="data:image/png;base64,{plot}" alt="Anomaly score over time for {_e(report.video)}">'
        '<p class="note">Blue: final score; grey: proposer score mapped to 0-1 (0.5 at its calibrated '
        'threshold); dashed: decision threshold; red bands: events; grey bands: candidates the LLM dismissed; '
        'purple ticks: gated frames '
        '(captioned and judged against the rules).</p></section>',
        _events(report, by_index),
    ]
    if report.explanation is not None:
        sections.append(_explanation(report.explanation, by_index))
    sections += [_rules(report), _models(report), _cost(report), _footer(report)]
    return page(f"Sleuth report: {report.video}", "\n".join(sections))


def page(title: str, body: str, *, style: str = "") -> str:
    """A self-contained page: inline CSS (the report's plus ``style``), no script, no network (CSP)."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="Sleuth {_e(__version__)}">\n'
            f"<title>{_e(title)}</title>\n<style>{_STYLE}{style}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def mmss(seconds: float) -> str:
    """``75.25`` -> ``01:15.3`` (minutes grow past 59 rather than adding an hours field)."""
    tenths = round(max(seconds, 0.0) * 10)
    minutes, rest = divmod(tenths, 600)
    return f"{'-' if seconds < 0 and tenths else ''}{minutes:02d}:{rest // 10:02d}.{rest % 10}"


# Sections ----------------------------------------------------------------------------------------------------


def _header(report: DetectReport) -> str:
    frames = report.frames
    gated = sum(frame.gated for frame in frames)
    counted = report.cost.frames or len(frames)
    per_frame = report.cost.llm_calls / counted if counted else 0.0
    events = len(report.events)
    sampling = f"sampled at {report.fps:g} fps" if report.fps else "every frame"
    parts = [
        f"<strong>{events} event{'' if events == 1 else 's'}</strong>",
        f"{len(frames)} frame{'' if len(frames) == 1 else 's'} ({sampling})",
        f"{mmss(frames[0].time_s)}–{mmss(frames[-1].time_s)} of video" if frames else "no video",
        f"{gated} gated ({_percent(gated, len(frames))})",
        f"{report.cost.llm_calls} LLM calls ({per_frame:.2f} per frame)",
        f"{report.cost.seconds:.1f} s",
    ]
    return (f'<header class="top"><p class="kicker">Sleuth investigation report</p>'
            f"<h1>{_e(report.video)}</h1>"
            f'<p class="scene">scene <strong>{_e(report.scene)}</strong></p>'
            f'<p class="summary">{" · ".join(parts)}</p></header>')


def _warnings(warnings: Sequence[str]) -> str:
    items = "".join(f"<li>{_e(text)}</li>" for text in warnings)
    return (f'<section class="warnings" role="alert"><h2>Warning{"" if len(warnings) == 1 else "s"}</h2>'
            f"<ul>{items}</ul><p class=\"note\">The results below cover only what was read.</p></section>")


def _events(report: DetectReport, by_index: dict[int, FrameScore]) -> str:
    if not report.events:
        found = findings(report)
        section = ('<section class="events"><h2>Events</h2><p class="empty">'
                   f"{_e(found[0].upper() + found[1:])}.</p></section>")
    else:
        cards = "\n".join(_event(event, report, by_index) for event in report.events)
        section = f'<section class="events"><h2>Events ({len(report.events)})</h2>\n{cards}</section>'
    if report.dismissed:
        cards = "\n".join(_event(event, report, by_index) for event in report.dismissed)
        section += (f'<section class="events dismissed"><h2>Dismissed candidates ({len(report.dismissed)})</h2>'
                    '<p class="muted">Spans the proposer and the rules flagged that the LLM judged normal '
                    "against the scene's rules; their frames are not counted as anomalous.</p>\n"
                    f"{cards}</section>")
    return section


def _event(event: VideoEvent, report: DetectReport, by_index: dict[int, FrameScore]) -> str:
    span = max(event.end_s - event.start_s, 0.0)
    rules = ("<ul class=\"rules\">" + "".join(f"<li>{_e(rule)}</li>" for rule in event.broken_rules) + "</ul>"
             if event.broken_rules else '<p class="muted">No rule named.</p>')
    reason = f'<p class="reason">{_e(event.reason)}</p>' if event.reason else ""
    if event.proposer_reason:
        reason += (f'<p class="reason"><span class="label">What the proposer saw (frame {event.proposer_frame}):'
                   f'</span> {_e(event.proposer_reason)}</p>')
    peak = by_index.get(event.peak_frame)
    caption = (f'<p class="caption"><span class="label">At the peak:</span> {_e(peak.caption)}</p>'
               if peak is not None and peak.caption else "")
    figures = "".join(_figure(index, report.thumbnails.get(index), by_index) for index in event.key_frames)
    frames = f'<div class="frames">{figures}</div>' if figures else ""
    dismissed = event.verdict == "dismissed"
    before = " before dismissal" if dismissed else ""
    heading = "Rules its frames matched" if dismissed else "Broken rules"
    return (f'<article class="card event" id="event-{event.id}">'
            f'<header><h3>{"Dismissed candidate" if dismissed else "Event"} #{event.id}</h3>'
            f'<span class="when">{mmss(event.start_s)} – {mmss(event.end_s)}</span>'
            f'<span class="muted">{span:.1f} s · frames {event.start_frame}–{event.end_frame}</span>'
            f'<span class="pill score">peak {event.peak_score:.2f} at {mmss(event.peak_s)}{before}</span>'
            f'{_validation(event)}</header>'
            f'<div class="label">{heading}</div>{rules}{reason}{caption}{frames}</article>')


def _validation(event: VideoEvent) -> str:
    if event.anomaly_probability is None:
        return ""
    said = {"confirmed": "confirmed by the LLM", "dismissed": "dismissed by the LLM"}.get(
        event.verdict, "judged by the LLM (validation off)")
    return f'<span class="pill">{said}: P(anomaly) {event.anomaly_probability:.2f}</span>'


def _figure(index: int, image: str | None, by_index: dict[int, FrameScore]) -> str:
    frame = by_index.get(index)
    when = mmss(frame.time_s) if frame is not None else "time unknown"
    caption = f"<figcaption>{when} · frame {index}</figcaption>"
    if not image:
        return f'<figure class="missing"><div class="noimage">no thumbnail</div>{caption}</figure>'
    return (f'<figure><img src="data:image/jpeg;base64,{_e(image)}" alt="frame {index} at {when}" '
            f'loading="lazy">{caption}</figure>')


def _explanation(explanation: Explanation, by_index: dict[int, FrameScore]) -> str:
    source = ("frames shown to a vision model" if explanation.source == "vlm"
              else "the LLM reasoning over the captions")
    model = f" ({_e(explanation.model)})" if explanation.model else ""
    parts = [f'<section class="explanation"><h2>Explanation</h2>'
             f'<p class="muted">By {source}{model}; {len(explanation.sampled_frames)} frames sampled, '
             f"{explanation.llm_calls} model calls. Verdicts come from the scores; the model's prose is "
             "checked sentence by sentence against the frames it was given, and sentences it could not "
             "support are removed (listed under each judgment).</p>"]
    if explanation.video_judgment is not None:
        parts.append("<h3>The video</h3>" + _judgment(explanation.video_judgment, by_index))
    if explanation.events:
        parts.append("<h3>Events</h3>" + "".join(_judgment(j, by_index) for j in explanation.events))
    if explanation.clips:
        rows = "".join(_clip_row(clip, by_index) for clip in explanation.clips)
        parts.append(f"<h3>Clips ({len(explanation.clips)})</h3>"
                     '<div class="scroll"><table class="clips"><thead><tr><th>time</th><th>frames</th>'
                     f"<th>verdict</th><th>judgment</th></tr></thead><tbody>{rows}</tbody></table></div>")
    if explanation.video_judgment is None and not explanation.events and not explanation.clips:
        parts.append('<p class="empty">The explanation has no judgments.</p>')
    parts.append("</section>")
    return "".join(parts)


def _judgment(judgment: Judgment, by_index: dict[int, FrameScore]) -> str:
    event = (f' · <a href="#event-{judgment.event_id}">event #{judgment.event_id}</a>'
             if judgment.event_id is not None else "")
    return (f'<div class="card judgment {_verdict_class(judgment)}"><header>{_verdict(judgment)}'
            f'<span class="when">{mmss(judgment.start_s)} – {mmss(judgment.end_s)}</span>'
            f'<span class="muted">{_frame_list(judgment.frames, by_index)}{event}</span></header>'
            f'<p class="lead">{_e(judgment.judgment)}</p>'
            f"<dl><dt>What happens</dt><dd>{_e(judgment.description)}</dd>"
            f"<dt>Rules</dt><dd>{_e(judgment.analysis)}</dd></dl>{_removed(judgment)}</div>")


def _removed(judgment: Judgment) -> str:
    if not judgment.removed:
        return ""
    items = "".join(f"<li>{_e(sentence)}</li>" for sentence in judgment.removed)
    return (f'<details class="muted"><summary>{len(judgment.removed)} sentence(s) the model wrote were removed'
            f"</summary><ul>{items}</ul></details>")


def _clip_row(clip: Judgment, by_index: dict[int, FrameScore]) -> str:
    return (f'<tr class="{_verdict_class(clip)}"><td class="nowrap">{mmss(clip.start_s)} – {mmss(clip.end_s)}</td>'
            f"<td>{_frame_list(clip.frames, by_index)}</td><td>{_verdict(clip)}</td>"
            f"<td>{_e(clip.judgment)}<details><summary>description and analysis</summary>"
            f"<p>{_e(clip.description)}</p><p>{_e(clip.analysis)}</p></details>{_removed(clip)}</td></tr>")


def _rules(report: DetectReport) -> str:
    groups: dict[str, list[str]] = {}
    for rule in report.rules:
        kind, sep, text = rule.partition(":")
        kind = kind.strip().lower() if sep and text.strip() else "rule"
        groups.setdefault(kind, []).append(text.strip() if sep and text.strip() else rule)
    if not groups:
        body = '<p class="muted">No rules recorded for this run.</p>'
    else:
        order = sorted(groups, key=lambda kind: ({"anomaly": 0, "normal": 1}.get(kind, 2), kind))
        body = '<div class="columns">' + "".join(
            f'<div class="rulegroup {_e(kind)}"><h3>{_e(kind.capitalize())} ({len(groups[kind])})</h3><ul>'
            + "".join(f"<li>{_e(text)}</li>" for text in groups[kind]) + "</ul></div>"
            for kind in order) + "</div>"
    return (f'<section class="rules-section"><h2>Scene rules</h2><p class="muted">Scene '
            f"<strong>{_e(report.scene)}</strong>, rules version {report.rules_version}.</p>{body}</section>")


def _models(report: DetectReport) -> str:
    if not report.models:
        return '<section><h2>Models</h2><p class="muted">Not recorded.</p></section>'
    rows = "".join(f"<tr><th>{_e(role)}</th><td><code>{_e(model)}</code></td></tr>"
                   for role, model in report.models.items())
    return f'<section><h2>Models</h2><div class="scroll"><table class="kv">{rows}</table></div></section>'


def _cost(report: DetectReport) -> str:
    cost = report.cost
    stages = sorted(cost.seconds_by_stage.items(), key=lambda item: -item[1])
    total = cost.seconds or sum(seconds for _, seconds in stages)
    rows = "".join(f"<tr><th>{_e(stage)}</th><td>{seconds:.2f} s</td><td>{_percent(seconds, total)}</td></tr>"
                   for stage, seconds in stages)
    table = (f'<div class="scroll"><table class="kv"><thead><tr><th>stage</th><th>seconds</th><th>share</th>'
             f'</tr></thead><tbody>{rows}</tbody><tfoot><tr><th>whole run</th><td>{total:.2f} s</td><td></td></tr>'
             "</tfoot></table></div>" if stages else "")
    return (f'<section><h2>Cost</h2><p>{cost.llm_calls} LLM calls ({cost.llm_calls_per_frame:.2f} per frame over '
            f"{cost.frames} frames, {cost.gated_frames} gated); {cost.prompt_tokens} prompt and "
            f"{cost.completion_tokens} completion tokens; {cost.seconds:.1f} s.</p>{table}</section>")


def _footer(report: DetectReport) -> str:
    items = [
        ("trace id", f"<code>{_e(report.trace_id)}</code>" if report.trace_id else "none"),
        ("created", _e(report.created) if report.created else "unknown"),
        ("decision threshold", f"{report.threshold:g}"),
        ("gate threshold", f"{report.gate_threshold:g} (proposer z units)"),
        ("sampling", f"{report.fps:g} fps" if report.fps else "every frame"),
        ("generator", f"Sleuth {_e(__version__)}"),
    ]
    rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in items)
    return f'<footer><h2>Provenance</h2><dl class="meta">{rows}</dl></footer>'


# Helpers -----------------------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "0%"


def _verdict(judgment: Judgment) -> str:
    return f'<span class="pill verdict">{"anomalous" if judgment.anomalous else "normal"}</span>'


def _verdict_class(judgment: Judgment) -> str:
    return "anomalous" if judgment.anomalous else "normal"


def _frame_list(indices: Sequence[int], by_index: dict[int, FrameScore], limit: int = 8) -> str:
    if not indices:
        return "no frames"
    shown = ", ".join(_frame_label(index, by_index) for index in indices[:limit])
    more = f", … (+{len(indices) - limit})" if len(indices) > limit else ""
    return f"{len(indices)} frame{'' if len(indices) == 1 else 's'}: {shown}{more}"


def _frame_label(index: int, by_index: dict[int, FrameScore]) -> str:
    frame = by_index.get(index)
    return f"{index} ({mmss(frame.time_s)})" if frame is not None else str(index)


_STYLE = "\n".join([
    ":root{--fg:#1d2430;--muted:#5d6776;--line:#e3e7ee;--bg:#f6f7f9;--card:#fff;--accent:#2563eb;"
    "--bad:#c62828;--bad-bg:#fdecec;--ok:#2e7d32;--ok-bg:#e9f5ea}",
    "*{box-sizing:border-box}",
    "body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,'Segoe UI',"
    "Roboto,'Helvetica Neue',Arial,sans-serif}",
    "main{max-width:1120px;margin:0 auto;padding:24px 20px 48px}",
    "h1{font-size:1.7rem;margin:.1em 0;word-break:break-all}",
    "h2{font-size:1.2rem;margin:0 0 .6em;padding-bottom:.3em;border-bottom:1px solid var(--line)}",
    "h3{font-size:1rem;margin:.9em 0 .4em}",
    "section,footer,header.top{background:var(--card);border:1px solid var(--line);border-radius:10px;"
    "padding:18px 20px;margin:0 0 18px}",
    ".kicker{margin:0;color:var(--muted);font-size:.8rem;text-transform:uppercase;letter-spacing:.08em}",
    ".scene{margin:0 0 .5em;color:var(--muted)}",
    ".summary{margin:0;font-size:1rem}",
    ".plot img{width:100%;height:auto;display:block}",
    ".note,.muted{color:var(--muted);font-size:.88rem}",
    ".empty{font-size:1.05rem;color:var(--ok);margin:.2em 0}",
    "section.warnings{background:var(--bad-bg);border-color:var(--bad)}",
    ".warnings h2{color:var(--bad);border-bottom-color:var(--bad)}",
    ".warnings ul{margin:0;padding-left:1.2em}",
    ".card{border:1px solid var(--line);border-left:4px solid var(--accent);border-radius:8px;padding:12px 14px;"
    "margin:0 0 14px;background:#fff}",
    ".card header{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:baseline}",
    ".card h3{margin:0}",
    ".event{border-left-color:var(--bad)}",
    ".when{font-variant-numeric:tabular-nums;font-weight:600}",
    ".pill{display:inline-block;padding:1px 9px;border-radius:999px;font-size:.8rem;font-weight:600}",
    ".score{background:var(--bad-bg);color:var(--bad)}",
    ".label{font-size:.78rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em;margin-top:.6em}",
    "ul.rules{margin:.2em 0 .4em;padding-left:1.2em}",
    ".reason{margin:.4em 0}",
    ".caption{margin:.4em 0;color:var(--muted)}",
    ".caption .label{display:inline;text-transform:none;letter-spacing:0;font-size:.88rem}",
    ".frames{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin-top:10px}",
    "figure{margin:0}",
    "figure img{width:100%;height:auto;border-radius:6px;display:block;background:#ddd}",
    "figcaption{font-size:.8rem;color:var(--muted);text-align:center;font-variant-numeric:tabular-nums}",
    ".noimage{aspect-ratio:4/3;border:1px dashed var(--line);border-radius:6px;display:flex;align-items:center;"
    "justify-content:center;color:var(--muted);font-size:.8rem}",
    ".judgment.anomalous{border-left-color:var(--bad)}",
    ".judgment.normal{border-left-color:var(--ok)}",
    ".anomalous .verdict{background:var(--bad-bg);color:var(--bad)}",
    ".normal .verdict{background:var(--ok-bg);color:var(--ok)}",
    ".lead{font-weight:600;margin:.5em 0}",
    "dl{margin:.3em 0}",
    "dt{font-size:.78rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}",
    "dd{margin:0 0 .5em}",
    ".scroll{overflow-x:auto}",
    "table{border-collapse:collapse;width:100%;font-size:.92rem}",
    "th,td{text-align:left;vertical-align:top;padding:6px 10px;border-bottom:1px solid var(--line)}",
    "thead th{font-size:.78rem;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}",
    "table.kv th{font-weight:600;white-space:nowrap;width:1%}",
    "tfoot th,tfoot td{border-bottom:0;font-weight:600}",
    ".nowrap{white-space:nowrap;font-variant-numeric:tabular-nums}",
    "details summary{cursor:pointer;color:var(--accent);font-size:.85rem}",
    "details p{margin:.3em 0}",
    "tr.anomalous td:first-child{box-shadow:inset 3px 0 var(--bad)}",
    ".columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:4px 24px}",
    ".rulegroup ul{margin:0;padding-left:1.2em}",
    ".rulegroup.anomaly h3{color:var(--bad)}",
    ".rulegroup.normal h3{color:var(--ok)}",
    "code{font:.88em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg);padding:1px 5px;"
    "border-radius:4px;word-break:break-all}",
    "dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}",
    "dl.meta dt{padding-top:2px}",
    "dl.meta dd{margin:0}",
    "a{color:var(--accent)}",
    "@media (max-width:640px){main{padding:12px 8px}section,footer,header.top{padding:14px 12px}"
    "h1{font-size:1.35rem}dl.meta{grid-template-columns:1fr}}",
    "@media print{body{background:#fff}section,footer,header.top{border:0;padding:0 0 12px}}",
])
