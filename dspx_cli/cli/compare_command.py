"""`dspx compare BASE_RUN NEW_RUN` (and the comparison `dspx evaluate --baseline` prints): rich tables
for people, `--json` for machines, `--markdown` for a CI job summary. All of it is data: stdout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dspx_cli.workflows.compare import Comparison, Pair

__all__ = ["markdown", "print_text", "run"]

CELL = 60  # characters of inputs or outputs shown in a table cell (the JSON document has them whole)
MARKDOWN_ROWS = 50  # per list: a job summary is for reading, and GitHub caps its size


def run(
    base: Path, new: Path, *, pass_score: float | None, max_regressions: int | None, as_json: bool, as_markdown: bool
) -> None:
    from dspx_cli.errors import UsageError
    from dspx_cli.workflows.compare import compare_folders

    if as_json and as_markdown:
        raise UsageError("--json and --markdown: choose one")
    if max_regressions is not None and max_regressions < 0:
        raise UsageError(f"--max-regressions {max_regressions}: expected 0 or more")
    comparison = compare_folders(base, new, pass_score)
    write(comparison, max_regressions, as_json=as_json, as_markdown=as_markdown)
    comparison.check(max_regressions)


def write(comparison: Comparison, max_regressions: int | None, *, as_json: bool, as_markdown: bool) -> None:
    if as_json:
        document = comparison.document(max_regressions)
        sys.stdout.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
    elif as_markdown:
        sys.stdout.write(markdown(comparison))
    else:
        print_text(comparison)


# ----- text ------------------------------------------------------------------------------------------


def print_text(comparison: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Off a terminal (CI logs, files) rich would wrap at 80 columns; COLUMNS still decides when set.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    console = Console(file=sys.stdout, highlight=False, width=wide)
    for line in _heading(comparison):
        console.print(line, markup=False)
    for note in comparison.notes:
        console.print(f"note: {note}", markup=False, style="yellow")
    for title, pairs, style in (
        ("Regressions (pass → fail)", comparison.regressions, "red"),
        ("Fixes (fail → pass)", comparison.fixes, "green"),
    ):
        if not pairs:
            console.print(f"{title}: none", markup=False)
            continue
        table = Table(title=f"{title}: {len(pairs)}", title_style=style, title_justify="left")
        for name, justify in _CHANGE_COLUMNS:
            table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for row in _change_rows(pairs):
            table.add_row(*(Text(cell) for cell in row))  # Text: an input's "[b]" is not rich markup
        console.print(table)
    table = Table(title="Totals", title_justify="left")
    for name in ("", "base", "new", "Δ"):
        table.add_column(name, justify="left" if not name else "right")
    for row in _total_rows(comparison):
        table.add_row(*row)
    console.print(table)


def _heading(comparison: Comparison) -> list[str]:
    document = comparison.document()
    lines = []
    for name in ("base", "new"):
        run = document[name]
        parts = [f"{run['program'] or '?'} ({run['program_sha256'] or '?'})", run["split"] or "?"]
        parts.append(f"{run['examples']} examples" + ("" if run["complete"] else f" ({run['aborted']})"))
        lines.append(f"{name:<4}  {run['dir']}  " + " · ".join(parts))
    count = len(comparison.pairs)
    lines.append(
        f"{count} matched example{'s' if count != 1 else ''}; pass: no error and score ≥ {comparison.pass_score:g}"
    )
    return lines


_CHANGE_COLUMNS = (
    ("#", "right"),
    ("inputs", "left"),
    ("base output", "left"),
    ("new output", "left"),
    ("base", "right"),
    ("new", "right"),
)


def _change_rows(pairs: list[Pair]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for base, new in pairs:
        where = str(base.index) if base.index == new.index else f"{base.index}→{new.index}"
        rows.append(
            (
                where,
                _short(new.inputs),
                _outcome(base.outputs, base.error),
                _outcome(new.outputs, new.error),
                _score(base.score, base.error),
                _score(new.score, new.error),
            )
        )
    return rows


def _short(value: Any, width: int = CELL) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _outcome(outputs: dict[str, Any] | None, error: str | None) -> str:
    if error is not None:
        return _short(f"error: {error}")
    if outputs is not None and len(outputs) == 1:  # one output field: its value says it all
        return _short(next(iter(outputs.values())))
    return _short(outputs)


def _score(score: float, error: str | None) -> str:
    return f"{score:g}" + (" (error)" if error is not None else "")


# (row, which figures, key, format, format of the delta)
_TOTALS = (
    ("score (matched)", "shared", "score", "{:.4f}", "{:+.4f}"),
    ("passed (matched)", "shared", "passed", "{:d}", "{:+d}"),
    ("errors (matched)", "shared", "errors", "{:d}", "{:+d}"),
    ("score (run)", "totals", "score", "{:.4f}", "{:+.4f}"),
    ("errors (run)", "totals", "errors", "{:g}", "{:+g}"),
    ("LM calls", "totals", "calls", "{:g}", "{:+g}"),
    ("tokens", "totals", "tokens", "{:g}", "{:+g}"),
    ("tokens paid (not cached)", "totals", "fresh_tokens", "{:g}", "{:+g}"),
    ("cost", "totals", "cost", "${:.4f}", "{:+.4f}"),
    ("time", "totals", "seconds", "{:.2f} s", "{:+.2f} s"),
)


def _total_rows(comparison: Comparison) -> list[tuple[str, str, str, str]]:
    figures = {"shared": comparison.shared(), "totals": comparison.totals()}
    return [(name, *_triple(figures[which], key, plain, signed=signed)) for name, which, key, plain, signed in _TOTALS]


def _triple(figures: dict[str, Any], key: str, plain: str, *, signed: str) -> tuple[str, str, str]:
    def show(value: Any, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    return (
        show(figures["base"][key], plain),
        show(figures["new"][key], plain),
        show(figures["delta"][key], signed),
    )


# ----- markdown --------------------------------------------------------------------------------------


def markdown(comparison: Comparison) -> str:
    """GitHub-flavoured markdown for a job summary: `>> "$GITHUB_STEP_SUMMARY"`."""
    regressions, fixes = comparison.regressions, comparison.fixes
    headline = f"{_count(len(regressions), 'regression')}, {_count(len(fixes), 'fix', 'fixes')}"
    document = comparison.document()
    out = [f"### dspx compare: {headline}", ""]
    out.append(
        f"base `{_code(document['base']['dir'])}` → new `{_code(document['new']['dir'])}` · "
        f"{len(comparison.pairs)} matched examples · pass: no error and score ≥ {comparison.pass_score:g}"
    )
    out.append("")
    for note in comparison.notes:
        out.append(f"> **note:** {_md(note)}  ")
    if comparison.notes:
        out.append("")
    out += ["| | base | new | Δ |", "|---|---:|---:|---:|"]
    out += [f"| {name} | {base} | {new} | {delta} |" for name, base, new, delta in _total_rows(comparison)]
    out.append("")
    for title, pairs in (("Regressions (pass → fail)", regressions), ("Fixes (fail → pass)", fixes)):
        if not pairs:
            continue
        out += [f"#### {title}: {len(pairs)}", ""]
        out += ["| # | inputs | base output | new output | base | new |", "|---:|---|---|---|---:|---:|"]
        out += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in _change_rows(pairs[:MARKDOWN_ROWS])]
        if len(pairs) > MARKDOWN_ROWS:
            out.append(f"\n… and {len(pairs) - MARKDOWN_ROWS} more (`dspx compare --json` lists them all)")
        out.append("")
    return "\n".join(out) + "\n"


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"


def _code(text: str) -> str:
    return " ".join(text.replace("`", "'").split())


def _md(text: str) -> str:
    """Text that stays inside its table cell and is not read as markup."""
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`"), ("*", "\\*")):
        text = text.replace(char, escaped)
    return " ".join(text.split())
