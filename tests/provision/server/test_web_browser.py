"""The web status page in a real headless Chromium (Debian's), against `provision serve` in a
namespace pair (198.18.41.0/24); the browser runs in the client namespace as an operator's would.

- the page loads (200) and its table shows the lab's devices, pools and rollouts sections;
- with scripts disabled the tables are all there and the filter form (typed into and clicked, a
  GET) filters; a device's page shows its timeline;
- a simulated switch (`provision onie-sim` in the client namespace) installs and its row turns
  `installed` with no reload (window.__loadedAt, set once per document, is unchanged), over the
  event stream;
- on a phone-sized viewport (390x844) the page does not scroll sideways;
- a reader outside the read policy gets the API's own 403 (curl from another address).
Screenshots go to $PROVISION_TEST_ARTEFACTS (default: a folder under the test's tmp path).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from onie import discovery
from tests.support.browser import artefacts_dir, launch
from tests.support.cli import onie_sim, run_cli

pytestmark = [pytest.mark.netns, pytest.mark.browser]

SERVER_IP = "198.18.41.1"
BROWSER_IP = "198.18.41.50"  # in api.read_from
OUTSIDER_IP = "198.18.41.60"  # not in it
URL = f"http://{SERVER_IP}:8080"
KVM = "x86_64-kvm_x86_64-r0"
MLNX = "x86_64-mlnx_msn2700-r0"
MACS = {"LEAF-01": "52:54:00:41:00:01", "LEAF-02": "52:54:00:41:00:02"}
STRAY = "52:54:00:41:00:09"

LAB = """\
interfaces: [wv0]
subnets:
  - network: 198.18.41.0/24
    interface: wv0
    pool: [198.18.41.100-198.18.41.199]
paths:
  state_dir: {state}
http_port: 8080
api: {{read: local, read_from: [{browser}/32]{api_extra}}}
onie:
  installers: {installers}
devices:
  - {{name: leaf-01, serial: LEAF-01, ip: 198.18.41.11, profile: kvm_x86_64}}
  - {{name: leaf-02, serial: LEAF-02, ip: 198.18.41.12, platform: {mlnx}}}
"""

ROWS = "[...document.querySelectorAll('#devices tbody tr[data-cursor]')]"
STATE_OF = (
    "(" + ROWS + ".filter(r => r.dataset.keys.split(' ').includes({name!r})).map(r => r.dataset.state)[0])"
)
NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"


def _lab(tmp_path: Path, api_extra: str = "") -> Path:
    installers = tmp_path / "installers"
    installers.mkdir()
    for platform in (KVM, MLNX):
        (installers / discovery.installer_file_name(platform)).write_bytes(
            f"#!/bin/sh\ntarget_platform='{platform}'\nnos_name='demo'\nnos_version='1.0'\nexit 0\n".encode()
        )
    lab = tmp_path / "lab.yml"
    text = LAB.format(
        state=tmp_path / "state", installers=installers, browser=BROWSER_IP, mlnx=MLNX, api_extra=api_extra
    )
    lab.write_text(text)
    return lab


def _serve(serve_netns, tmp_path: Path, api_extra: str = ""):
    lab = _lab(tmp_path, api_extra)
    link = serve_netns(server_if="wv0", client_if="wc0", server_addr=f"{SERVER_IP}/24", prefix="wb")
    for addr in (BROWSER_IP, OUTSIDER_IP):  # the first is the source the browser's requests use
        link.client.run(["ip", "addr", "add", f"{addr}/24", "dev", "wc0"])
    sp = link.serve(str(lab))
    return lab, link, sp


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = page.screenshot(artefacts_dir(tmp_path) / f"{name}.png")
    print(f"screenshot: {path}")
    return path


def test_page_tables_without_javascript_and_on_a_phone(serve_netns, tmp_path):
    _, link, sp = _serve(serve_netns, tmp_path)
    with launch(link.client, tmp_path / "chrome") as browser:
        page = browser.new_page()
        page.navigate(URL + "/")
        assert page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus") == 200
        names = page.evaluate(ROWS + ".map(r => r.querySelector('td.name').textContent.trim())")
        assert names == ["leaf-01", "leaf-02"]
        assert page.evaluate("document.querySelector('#pools td.free').textContent") == "100"
        assert page.evaluate("!!document.querySelector('#rollouts')")
        assert page.evaluate("window.__loadedAt > 0")  # status.js ran
        _shot(page, tmp_path, "index-laptop")

        # A phone: no sideways scrolling of the page; the tables scroll inside their box.
        page.viewport(390, 844, mobile=True, scale=2)
        page.navigate(URL + "/")
        assert page.evaluate(NO_OVERFLOW), page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        _shot(page, tmp_path, "index-phone")
        page.navigate(URL + "/devices/leaf-01")
        assert page.evaluate(NO_OVERFLOW)
        _shot(page, tmp_path, "device-phone")
        page.viewport(1280, 900)

        # Scripts off: the same tables; the filter form is a plain GET.
        page.send("Emulation.setScriptExecutionDisabled", value=True)
        page.navigate(URL + "/")
        assert page.evaluate("window.__loadedAt") is None  # status.js did not run
        assert page.evaluate(ROWS + ".length") == 2
        since = len(browser.events)
        page.type_into("form.filters input[name=name]", "leaf-02")
        page.click("form.filters button[type=submit]")
        page.wait_load(since)
        assert page.evaluate("location.search") == "?state=&platform=&name=leaf-02"
        assert page.evaluate(ROWS + ".map(r => r.dataset.cursor)") == ["d:leaf-02"]
        page.navigate(URL + "/?state=installed")
        assert page.evaluate("document.querySelector('#devices tbody tr.empty').textContent") == (
            "No devices match."
        )
        # A device's page and its timeline, by name and by MAC; an unknown one is 404.
        page.navigate(URL + "/devices/leaf-01")
        assert page.evaluate("document.querySelector('#devices td.name').textContent.trim()") == "leaf-01"
        assert page.evaluate("!!document.querySelector('#timeline')")
        page.navigate(URL + "/devices/nosuch")
        assert page.evaluate("performance.getEntriesByType('navigation')[0].responseStatus") == 404
        assert browser.js_errors() == []

    # Outside the read policy: the API's own answer, on the page's paths too.
    for path in ("/", "/devices/leaf-01", "/web/fragment/summary", "/api/v1/status"):
        out = link.client.run(
            ["curl", "-s", "--interface", OUTSIDER_IP, "-o", "-", "-w", "\n%{http_code}", URL + path]
        )
        body, _, code = out.stdout.rpartition("\n")
        assert code == "403" and "forbidden" in json.loads(body)["error"], (path, out.stdout)
    assert "Traceback" not in sp.output


def _arm(lab: Path, name: str) -> None:
    """`provision devices arm`, another process writing to the server's state, as an operator."""
    out = run_cli("devices", "arm", name, "--lab", str(lab))
    assert out.returncode == 0, out.stderr


def test_install_shows_live_without_reload(serve_netns, tmp_path):
    lab, link, sp = _serve(serve_netns, tmp_path)
    with launch(link.client, tmp_path / "chrome") as browser:
        page = browser.new_page()
        page.navigate(URL + "/")
        page.wait_for("window.__streamOpen", timeout=15)
        loaded_at = page.evaluate("window.__loadedAt")
        assert page.evaluate(STATE_OF.format(name="leaf-01")) == "enrolled"

        _arm(lab, "leaf-01")
        page.wait_for(STATE_OF.format(name="leaf-01") + " === 'armed'", timeout=15)
        args = ("--serial", "LEAF-01", "--platform", KVM, "--mac", MACS["LEAF-01"])
        rc, doc, _ = onie_sim(link.client, *args, ifname="wc0")
        assert rc == 0 and doc["switches"][0]["outcome"] == "installed", doc
        page.wait_for(STATE_OF.format(name="leaf-01") + " === 'installed'", timeout=15)

        assert page.evaluate("window.__loadedAt") == loaded_at  # the same document: no reload
        row = page.evaluate(ROWS + ".find(r => r.dataset.cursor === 'd:leaf-01').innerText")
        assert "demo 1.0" in row and KVM in row, row
        assert page.evaluate("document.querySelector('#pools td.free').textContent") == "100"  # reserved

        # A switch no inventory lists: its row appears, in order, and it takes a pool address.
        args = ("--serial", "STRAY-9", "--platform", MLNX, "--mac", STRAY)
        rc, doc, _ = onie_sim(link.client, *args, ifname="wc0")
        assert doc["switches"][0]["installer_runs"] == 0, doc
        page.wait_for(ROWS + f".map(r => r.dataset.cursor).join() === 'd:leaf-01,d:leaf-02,u:{STRAY}'")
        page.wait_for("document.querySelector('#pools td.free').textContent === '99'")
        assert page.evaluate("window.__loadedAt") == loaded_at
        _shot(page, tmp_path, "index-live-installed")

        # Its page: the timeline has the install, and follows the next events live.
        page.navigate(URL + "/devices/leaf-01")
        kinds = page.evaluate(
            "[...document.querySelectorAll('#timeline tbody tr td:nth-child(2)')].map(t => t.textContent)"
        )
        assert "device.installed" in kinds and "installer.fetched" in kinds, kinds
        page.wait_for("window.__streamOpen", timeout=15)
        before = page.evaluate("document.querySelectorAll('#timeline tbody tr').length")
        _arm(lab, "leaf-01")
        page.wait_for(
            f"document.querySelectorAll('#timeline tbody tr').length > {before}"
            " && document.querySelector('#timeline tbody tr td:nth-child(2)').textContent === 'device.armed'",
            timeout=15,
        )
        page.wait_for("document.querySelector('#devices tr[data-cursor]').dataset.state === 'armed'")
        page.wait_for(
            "[...document.querySelectorAll('#facts dd')].some(d => d.textContent.startsWith('armed ('))"
        )
        assert page.evaluate("window.__loadedAt") != loaded_at  # (this page was navigated to)
        _shot(page, tmp_path, "device-timeline")
        assert browser.js_errors() == []
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and "Traceback" not in sp.output:
        time.sleep(0.2)
    assert "Traceback" not in sp.output


def test_refused_stream_is_retried_until_live(serve_netns, tmp_path):
    """The server takes one stream (api.stream_subscribers: 1) and curl holds it: the page's
    stream is refused (503, which ends an EventSource for good), the page says so and connects
    again by itself once the slot is free, without a reload."""
    _, link, _ = _serve(serve_netns, tmp_path, api_extra=", stream_subscribers: 1")
    holder = link.client.popen(["curl", "-sN", URL + "/api/v1/stream"])
    with launch(link.client, tmp_path / "chrome") as browser:
        page = browser.new_page()
        deadline = time.monotonic() + 10
        while True:  # curl may take a moment to connect: reload until its stream holds the slot
            page.navigate(URL + "/")
            try:
                page.wait_for(
                    "document.getElementById('live').textContent.startsWith('not live: retrying')", 3
                )
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        loaded_at = page.evaluate("window.__loadedAt")
        assert not page.evaluate("window.__streamOpen")
        link.client.stop(holder)
        page.wait_for("window.__streamOpen", timeout=20)
        assert page.evaluate("document.getElementById('live').textContent") == "live"
        assert page.evaluate("window.__loadedAt") == loaded_at
        assert [e for e in browser.js_errors() if "503" not in e] == []
