"""Screenshots of the dashboard with demo data, for the README and docs/.

    .venv/bin/python bench/screenshots.py            # writes docs/screenshots/*.png

Runs `codecdash demo --seed 7 --speed 3600 --history 21` on a free port over a temporary
database, waits until its data is on the page and the stream is live, and saves viewport
screenshots in Chromium (CHROME_PATH, default /usr/bin/chromium):

- desktop-light.png, desktop-dark.png: 1280 × 900;
- phone-light.png, phone-dark.png: 390 × 844 at 2× (an ordinary phone).

Motion is reduced (no pulse caught mid-way). A PNG over 400 KB is an error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from codecdash.net import free_port

ROOT = Path(__file__).resolve().parent.parent
CODECDASH = Path(sys.executable).with_name("codecdash")
MAX_BYTES = 400 * 1024
SHOTS = [
    ("desktop-light", {"width": 1280, "height": 900}, 1, "light"),
    ("desktop-dark", {"width": 1280, "height": 900}, 1, "dark"),
    ("phone-light", {"width": 390, "height": 844}, 2, "light"),
    ("phone-dark", {"width": 390, "height": 844}, 2, "dark"),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--hide-scrollbars",
]


def start_demo(db: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [str(CODECDASH), "demo", "--seed", "7", "--speed", "3600", "--history", "21"]
    cmd += ["--port", str(port), "--db", str(db)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_data(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the demo's snapshot has experiments, workers and costs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"codecdash demo exited with {proc.returncode}")
        try:
            snap = httpx.get(url + "/api/v1/dashboard", timeout=2).json()
        except (httpx.TransportError, ValueError):
            snap = None
        if (
            snap
            and (snap["summary"].get("total_experiments") or 0) > 50
            and snap["cost_breakdown"]
            and snap["infrastructure"]["training_workers"].get("active")
        ):
            return
        time.sleep(0.25)
    raise SystemExit(f"the demo had no data after {timeout:g} s")


def settle(page: Page) -> None:
    """Data drawn, stream live, charts in view drawn."""
    expect(page.locator("#main")).not_to_have_class("is-loading", timeout=15000)
    expect(page.locator("#connection-status .conn-text")).to_have_text("Live", timeout=15000)
    in_view = page.evaluate(
        """() => [...document.querySelectorAll('.grid-charts .chart')]
            .filter((b) => b.getBoundingClientRect().top < innerHeight + 200).length"""
    )
    expect(page.locator(".grid-charts canvas")).to_have_count(in_view, timeout=15000)
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(300)  # the last frame of any redraw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chrome", default=os.environ.get("CHROME_PATH", "/usr/bin/chromium"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="codecdash-shots-") as tmp:
        proc = start_demo(Path(tmp) / "demo.db", port)
        try:
            wait_for_data(url, proc)
            errors: list[str] = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chrome, args=CHROMIUM_ARGS)
                for name, viewport, scale, scheme in SHOTS:
                    context = browser.new_context(
                        viewport=viewport,  # type: ignore[arg-type]
                        device_scale_factor=scale,
                        color_scheme=scheme,  # type: ignore[arg-type]
                        reduced_motion="reduce",
                        is_mobile=name.startswith("phone"),
                        has_touch=name.startswith("phone"),
                    )
                    page = context.new_page()
                    page.on(
                        "console",
                        lambda m, n=name: (
                            errors.append(f"{n}: {m.text}") if m.type == "error" else None
                        ),
                    )
                    page.goto(url + "/")
                    settle(page)
                    path = args.out / f"{name}.png"
                    page.screenshot(path=str(path))
                    size = path.stat().st_size
                    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    print(f"{shown}: {size / 1024:.0f} KiB")
                    if size > MAX_BYTES:
                        raise SystemExit(f"{path} is {size / 1024:.0f} KiB, over 400 KiB")
                    context.close()
                browser.close()
            if errors:
                raise SystemExit("console errors:\n" + "\n".join(errors))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
