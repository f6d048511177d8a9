"""Make docs/report-support.png: the report of a real run, one example opened, in headless chromium.

dspx compile programs/support.yaml                      # on the embedded model; prints the state path
dspx evaluate programs/support.yaml --state STATE --output runs/support-compiled
python docs/report_screenshot.py runs/support-compiled [docs/report-support.png]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dspx_cli.workflows.report import write_report  # noqa: E402
from tests.browser import Browser  # noqa: E402


def main() -> None:
    run = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "report-support.png"
    report = write_report([run])
    with Browser() as browser:
        page = browser.open(report.path)
        page.wait_for("window.dspxReport && window.dspxReport.ready")
        page.evaluate(
            "(async () => { const t = window.dspxReport.current.table; await t.scrollToRow(3, 'top', false);"
            " t.getRow(3).getElement().click(); window.scrollTo(0, 0);"
            " document.querySelector('.examples').style.maxHeight = '330px'; })()"
        )
        time.sleep(0.3)
        page.screenshot(out, 1280, 1350)
        if page.errors:
            raise SystemExit(f"console errors: {page.errors}")
    print(out)


if __name__ == "__main__":
    main()
