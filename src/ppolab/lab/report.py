"""A sweep directory turned into a report: ``report.md``, ``report.html`` and ``figures/*.png``.

The statistics come from :mod:`ppolab.lab.results`, the figures from :mod:`ppolab.lab.figures`;
both reports are rendered from one list of blocks, so that the Markdown and the self-contained
HTML (figures embedded) always say the same thing.
"""

from __future__ import annotations

import base64
import html
import io
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ppolab.files import atomic_write
from ppolab.lab.conclusions import conclude
from ppolab.lab.figures import AGGREGATE_NAMES, FIGURES, NoData, ReportData
from ppolab.lab.results import SweepData, improvement_table, load_sweep, summarize
from ppolab.lab.stats import AGGREGATES, Estimate

# --- text --------------------------------------------------------------------------------------

# The report as a list of blocks, rendered to Markdown and to HTML by one function each.
_Link = namedtuple("_Link", "text href")  # href relative to the sweep directory
_Heading = namedtuple("_Heading", "text level", defaults=(2,))
_Paragraph = namedtuple("_Paragraph", "text")
_Table = namedtuple("_Table", "header rows")  # rows of cells: str or _Link
_Image = namedtuple("_Image", "path caption")  # path relative to the sweep directory
_Items = namedtuple("_Items", "items")


def _estimate(estimate: Estimate | None, digits: int = 1) -> str:
    if estimate is None:
        return "no data"
    return f"{estimate.point:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def _number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})"
    return f"{len(seeds)} seed{'s' * (len(seeds) != 1)} ({', '.join(map(str, seeds))})"


def _header_blocks(report: ReportData, conclusion: str | None) -> list:
    plan = report.data.plan
    grid = "; ".join(f"{key} ∈ {{{', '.join(map(str, values))}}}" for key, values in (plan.get("grid") or {}).items())
    algos = ", ".join(dict.fromkeys(t.algo for t in report.data.trials)) or str(plan.get("algo"))
    title = f"{plan.get('env_id')} sweep: {algos}, {grid or 'no grid'}, {_seeds_text(list(plan.get('seeds', [])))}"
    blocks: list = [_Heading(title, 1)]
    if conclusion:
        blocks += [_Heading("What the data say"), _Items(conclusion.splitlines())]
    blocks.append(_Paragraph(
        f"Score: the {report.score_text}. Budget: {report.data.budget_text()} per trial. IQM is the interquartile mean (the mean of the middle 50% of runs); brackets are 95% "
        f"stratified bootstrap confidence intervals over runs ({report.reps} resamples)."))
    unfinished = sum(t.state in ("pending", "running") for t in report.data.trials)
    if unfinished:
        blocks.append(_Paragraph(f"{unfinished} trials are still pending or running; this report covers the others."))
    return blocks


def _summary_blocks(report: ReportData) -> list:
    rows = []
    for s in report.summaries:
        steps, seconds = s.steps_to_threshold, s.seconds_to_threshold
        rows.append([s.label, str(s.runs), str(s.done), str(s.failed),
                     *(_estimate(s.estimates.get(name)) for name in AGGREGATES),
                     f"{steps.reached}/{steps.runs}" if steps else "no threshold" if s.estimates else "no data",
                     _number(steps.median) if steps else "—", _number(seconds.median, 1) if seconds else "—"])
    header = ["configuration", "runs", "done", "failed", *(f"{AGGREGATE_NAMES[n]} [95% CI]" for n in AGGREGATES),
              "reached threshold", "median steps to threshold", "median seconds to threshold"]
    threshold = "" if report.threshold is None else f" ({report.threshold:g})"
    note = (f"Reached threshold: runs whose rolling mean training return reached the reward threshold{threshold}. "
            "The medians count runs that never reached it as infinitely slow (censored), so they show — "
            "unless more than half of the runs reached it.")
    if not report.scored():
        note = "No data: no trial finished with a score, so there are no estimates. " + note
    return [_Heading("Configurations"), _Table(header, rows), _Paragraph(note)]


def _improvement_blocks(report: ReportData) -> list:
    labels = [s.label for s in report.scored()]
    if len(labels) < 2:
        return [_Heading("Probability of improvement"),
                _Paragraph("Not computed: it needs two or more configurations with done trials.")]
    rows = [[a, *("—" if a == b else _estimate(report.improvements[a, b], 2) for b in labels)] for a in labels]
    return [_Heading("Probability of improvement"), _Paragraph(
        "P(row > column): the probability that a run of the row configuration scores higher than a run "
        "of the column configuration (ties count half), with 95% bootstrap CI; 0.5 means no difference."),
        _Table(["row > column", *labels], rows)]


def _figure_blocks(report: ReportData, figures_dir: Path) -> list:
    blocks: list = [_Heading("Figures")]
    figures_dir.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES:
        try:
            fig, caption = draw(report)
        except NoData as why:
            (figures_dir / name).unlink(missing_ok=True)  # a figure from an earlier report would mislead
            blocks.append(_Paragraph(f"{name} not drawn: {why}."))
            continue
        png = io.BytesIO()
        fig.savefig(png, format="png")
        atomic_write(figures_dir / name, lambda f, png=png: f.write(png.getvalue()))
        blocks.append(_Image(f"figures/{name}", caption))
    return blocks


def _run_link(data: SweepData, name: str) -> str | _Link:
    run_dir = Path("runs") / name
    if (data.path / run_dir / "summary.json").is_file():
        return _Link("summary.json", f"{run_dir}/summary.json")
    return _Link("directory", f"{run_dir}/") if (data.path / run_dir).is_dir() else "—"


def _trial_blocks(report: ReportData) -> list:
    failed = [t for t in report.data.trials if t.state == "failed"]
    blocks: list = [_Heading("Failed trials")]
    blocks.append(_Items([f"{t.name}: {t.error or 'no error message was recorded'}" for t in failed])
                  if failed else _Paragraph("No trial failed."))
    rows = []
    for t in report.data.trials:
        result = t.result or {}
        rows.append([t.name, t.state, _number(t.score, 1), _number(result.get("total_steps")),
                     _number(result.get("wall_seconds"), 1), _number(result.get("solved_at_step")),
                     _run_link(report.data, t.name)])
    header = ["trial", "state", "score", "steps", "seconds", "reached threshold at step", "run"]
    return [*blocks, _Heading("Trials"), _Table(header, rows)]


def _url(path: str) -> str:
    return quote(path, safe="/=+,")


def _markdown_text(text: str) -> str:
    for char in "\\`*<|":
        text = text.replace(char, "\\" + char)
    return " ".join(text.splitlines())


def _markdown(blocks: list) -> str:
    def cell(value: str | _Link) -> str:
        if isinstance(value, _Link):
            return f"[{_markdown_text(value.text)}]({_url(value.href)})"
        return _markdown_text(value)

    parts = []
    for block in blocks:
        match block:
            case _Heading(text, level):
                parts.append("#" * level + " " + _markdown_text(text))
            case _Paragraph(text):
                parts.append(_markdown_text(text))
            case _Table(header, rows):
                lines = [header, ["---"] * len(header), *rows]
                parts.append("\n".join("| " + " | ".join(map(cell, line)) + " |" for line in lines))
            case _Image(path, caption):
                parts.append(f"![{Path(path).stem}]({_url(path)})\n\n{_markdown_text(caption)}")
            case _Items(items):
                parts.append("\n".join("- " + _markdown_text(item) for item in items))
    return "\n\n".join(parts) + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em}th{background:#f3f3f3}td{white-space:nowrap}
figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:.9em;color:#555}"""


def _html(blocks: list, root: Path) -> str:
    esc = html.escape

    def cell(value: str | _Link) -> str:
        return f'<a href="{esc(_url(value.href))}">{esc(value.text)}</a>' if isinstance(value, _Link) else esc(value)

    parts = []
    for block in blocks:
        match block:
            case _Heading(text, level):
                parts.append(f"<h{level}>{esc(text)}</h{level}>")
            case _Paragraph(text):
                parts.append(f"<p>{esc(text)}</p>")
            case _Table(header, rows):
                head = "".join(f"<th>{esc(h)}</th>" for h in header)
                body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>\n" for row in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody></table>")
            case _Image(path, caption):
                data = base64.b64encode((root / path).read_bytes()).decode("ascii")
                parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                             f"<figcaption>{esc(caption)}</figcaption></figure>")
            case _Items(items):
                parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>")
    title = next((b.text for b in blocks if isinstance(b, _Heading)), "sweep report")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


@dataclass(frozen=True)
class WrittenReport:
    html: Path
    markdown: Path
    conclusion: str


def write_report(sweep_dir: str | Path, conclusion: str | None = None, reps: int = 2000) -> WrittenReport:
    """Write ``report.md``, ``report.html`` (self-contained) and ``figures/*.png`` into a sweep
    directory, from whatever trials have finished. Figures without data are left out and the
    report says why. ``conclusion`` defaults to :func:`ppolab.lab.conclusions.conclude`'s."""
    data = load_sweep(sweep_dir)
    summaries = summarize(data, reps=reps)
    if conclusion is None:
        conclusion = conclude(data, reps=reps, summaries=summaries)
    report = ReportData(data, summaries, improvement_table(data, summaries, reps=reps), reps)
    blocks = [*_header_blocks(report, conclusion), *_summary_blocks(report), *_improvement_blocks(report),
              *_figure_blocks(report, data.path / "figures"), *_trial_blocks(report)]
    written = WrittenReport(data.path / "report.html", data.path / "report.md", conclusion)
    atomic_write(written.markdown, lambda f: f.write(_markdown(blocks).encode()))
    atomic_write(written.html, lambda f: f.write(_html(blocks, data.path).encode()))
    return written
