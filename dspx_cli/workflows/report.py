"""`dspx report RUN_DIR...`: one self-contained HTML page for evaluate, compile and finetune runs.

The page opens from disk with no network and no server: the template (jinja2), the page's own
script and style, the vendored libraries (Tabulator for the example table, Chart.js for the charts:
report_files/vendor/, fetched by its fetch.sh at the versions in VERSIONS) and the runs' data are
all inlined. The data is one JSON document in a `<script type="application/json">` element, with
`<`, `>` and `&` written as JSON escapes, so no text from a run folder can end that element or be
read as markup; the page's script puts every value into the page as text, never as HTML.

jinja2 is the `report` extra and is imported here only, when a report is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from dspx_cli import __version__
from dspx_cli.errors import UsageError
from dspx_cli.workflows.report_data import RunData, Strings, read_run

__all__ = ["ReportResult", "default_output", "write_report"]

FILES = "report_files"


@dataclass(frozen=True)
class ReportResult:
    path: Path
    runs: list[RunData]
    bytes: int
    seconds: float


def default_output(run_dirs: list[Path]) -> Path:
    """RUN_DIR/report.html for one run; report.html here for several."""
    return run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html")


def write_report(run_dirs: list[Path], output: Path | None = None, *, limit: int | None = None) -> ReportResult:
    if not run_dirs:
        raise UsageError("report: expected at least one RUN_DIR")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: expected a positive number of examples")
    started = time.perf_counter()
    strings = Strings()
    runs = [read_run(directory, strings, limit=limit) for directory in run_dirs]
    html = render(runs, strings)
    path = output or default_output(run_dirs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(html)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the report ({exc.strerror or exc})") from None
    return ReportResult(path, runs, len(html), time.perf_counter() - started)


def page_json(value: Any) -> str:
    """JSON that may sit inside a <script> element: no `<`, `>` or `&` appears in it as itself
    (inside JSON strings they become \\u escapes, which JSON.parse reads back unchanged)."""
    raw = orjson.dumps(value)
    return raw.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026").decode()


def render(runs: list[RunData], strings: Strings) -> bytes:
    try:
        import jinja2
        from markupsafe import Markup
    except ImportError:
        raise UsageError("dspx report needs jinja2: pip install 'dspx_cli[report]'") from None
    files = resources.files("dspx_cli.workflows").joinpath(FILES)

    def text(name: str) -> str:
        return files.joinpath(name).read_text(encoding="utf-8")

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(text("report.html.j2"))
    data = {"version": __version__, "runs": [run.page() for run in runs], "strings": strings.texts}
    html = template.render(
        title=", ".join(run.name for run in runs),
        version=__version__,
        # Trusted text: ours and the vendored libraries'; `Markup` keeps autoescape off them alone.
        style=Markup(text("vendor/tabulator.min.css") + "\n" + text("report.css")),
        scripts=[Markup(text(name)) for name in _SCRIPTS],
        data=Markup(page_json(data)),
    )
    return html.encode("utf-8")


_SCRIPTS = ("vendor/tabulator.min.js", "vendor/chart.umd.min.js", "report.js")
