"""The progress reports of provision's installer, as URLs (pure; docs/onie.md "The installer contract").

The installer (templates/installer/report.sh.j2) sends best-effort
`GET <base>/api/v1/report?stage=&status=&nos=&version=&platform=&serial=&mac=&message=[&token=]`:
`base` is the spec's `report_url`, else scheme://host[:port] of the URL ONIE fetched the installer
from (`onie_exec_url`); `token` is carried over from that URL's query (or `PROVISION_TOKEN`), so a
server that hands out per-install URLs can tell whose report it is. This module builds the same URL
for `provision onie-sim`; tests/onie/test_installer.py checks that the shell and this agree.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_plus, urlsplit

from onie.installer.model import Stage

REPORT_PATH = "/api/v1/report"
TOKEN = "token"
# The query's fields in the order report.sh.j2 writes them (the server reads them by name).
FIELDS = ("stage", "status", "nos", "version", "platform", "serial", "mac", "message")
STATUS_PROGRESS = "progress"
STATUS_OK = "ok"
STATUS_FAILED = "failed"
# The stages in the order an install passes them: the header reports `started` and `verified`,
# install.sh each later one as it begins, and `complete` with status ok at the end.
ORDER = (Stage.STARTED, Stage.VERIFIED, Stage.PARTITIONED, Stage.PAYLOAD, Stage.BOOTLOADER, Stage.COMPLETE)
HTTP_SCHEMES = ("http", "https")


def report_base(installer_url: str | None, report_url: str | None = None) -> str | None:
    """Where reports go: `report_url` (trailing '/' dropped), else scheme://host[:port] of the URL
    the installer came from. None when that is not HTTP (a TFTP-fetched installer's wget cannot
    report to tftp://; the shell tries and fails quietly, the simulator does not try)."""
    if report_url:
        return report_url.rstrip("/")
    if not installer_url:
        return None
    parts = urlsplit(installer_url)
    if parts.scheme.lower() not in HTTP_SCHEMES or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def token_of(installer_url: str | None) -> str | None:
    """The first `token=` of the installer URL's query, decoded; None when there is none."""
    if not installer_url:
        return None
    # decoded as the server that issued it reads a query ('+' is a space); the shell copies the
    # text as it is, which the server decodes the same way
    for item in urlsplit(installer_url).query.split("&"):
        key, eq, value = item.partition("=")
        if key == TOKEN and eq and value:
            return unquote_plus(value)
    return None


def report_url(
    base: str,
    stage: Stage | str,
    status: str,
    *,
    nos: str | None = None,
    version: str | None = None,
    platform: str | None = None,
    serial: str | None = None,
    mac: str | None = None,
    message: str | None = None,
    token: str | None = None,
) -> str:
    """The one report URL. Every field is sent (empty when unknown), as the shell does."""
    values = {
        "stage": stage.value if isinstance(stage, Stage) else stage,
        "status": status,
        "nos": nos,
        "version": version,
        "platform": platform,
        "serial": serial,
        "mac": mac,
        "message": message,
    }
    query = "&".join(f"{k}={quote(values[k] or '', safe='')}" for k in FIELDS)
    if token:
        query += f"&{TOKEN}={quote(token, safe='')}"
    return f"{base.rstrip('/')}{REPORT_PATH}?{query}"
