"""report.html in a real browser: headless Chromium (Debian's `chromium` package; `make test`
installs it where it can).  Every image loads, nothing overflows the page, and a screenshot
is kept in build/test-artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from physmem.reports import report
from physmem.workloads import RunConfig, run_workload, write_run

ARTIFACTS = Path(__file__).parents[1] / "build" / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]

CHECK = """<script>
window.addEventListener("load", () => {
  const vw = document.documentElement.clientWidth;
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const wide = [...document.body.querySelectorAll("*")]
      .filter(e => e.getBoundingClientRect().right > vw + 1).map(e => e.tagName);
  const r = document.createElement("pre");
  r.id = "browser-check";
  r.textContent = `images=${imgs.length} broken=${JSON.stringify(bad)} ` +
      `overflow=${JSON.stringify(wide)} scroll=${document.documentElement.scrollWidth} vw=${vw}`;
  document.body.appendChild(r);
});
</script>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_html_in_a_real_browser(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (make test tries `apt-get install chromium`)")
    run = run_workload(RunConfig("fragment", "firecracker-128m", ops=1500, seed=2))
    files = report(write_run(run, tmp_path / "run"))
    page = files["report.html"].read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK + "</body>"))
    for width in (1280, 700):         # a desktop window and a narrow one
        dom = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={tmp_path / f'profile{width}'}",
             f"--window-size={width},900", "--virtual-time-budget=5000", "--dump-dom",
             probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
        m = re.search(r'<pre id="browser-check">(.*?)</pre>', dom)
        assert m, f"the check did not run at width {width}"
        result = m.group(1)
        assert "images=5 " in result and "broken=[]" in result, result
        assert "overflow=[]" in result, (width, result)
        scroll, vw = map(int, re.search(r"scroll=(\d+) vw=(\d+)", result).groups())
        assert scroll <= vw, (width, result)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}",
                    "--window-size=1280,4200", f"--screenshot={shot}",
                    files["report.html"].as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000
