"""What `provision onie-sim` plays once ONIE would run a downloaded installer: provision's
installer's own checks, its stages and its progress reports, without touching a disk.

The real installer (templates/installer/header.sh.j2, install.sh.j2; docs/onie.md "The installer
contract") reports `started progress`, checks its payload (`verified failed "sha256 mismatch"`),
reports `verified progress`, refuses another platform (`verified failed "wrong platform <this
switch's platform>"`), then install.sh reports `partitioned`, `payload`, `bootloader` as each
begins, `<stage> failed` when one fails, and `complete ok` at the end. Exit 0 only then.
Reports are best-effort GETs to scheme://host[:port] of the installer's URL, carrying that URL's
`token=` (onie.installer.report builds them: one copy of the URL's shape); an answer other than
200, or none, never changes the outcome.

Knobs (`Behaviour`, from the CLI): `fail_at` a stage (that stage reports failed, exit 1), `hang`
(started, then nothing: ONIE would wait forever), `wrong_platform` (the header's platform check
fails as on another machine), `report` False (no reports at all).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from onie.identity import OnieIdentity
from onie.installer.model import Stage
from onie.installer.report import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PROGRESS,
    report_base,
    report_url,
    token_of,
)
from provision.onie.catalog import read_header_vars

REPORT_TIMEOUT_S = 3.0  # report.sh.j2: `wget -T 3`
# The stages a run can be told to fail at, in install order (`started` fails in install.sh
# before partitioning, e.g. when no ONIE-BOOT disk is found).
FAIL_STAGES = (Stage.VERIFIED, Stage.STARTED, Stage.PARTITIONED, Stage.PAYLOAD, Stage.BOOTLOADER)
_STAGE_TEXT = {
    Stage.PARTITIONED: "partitioning (simulated)",
    Stage.PAYLOAD: "writing the payload (simulated)",
    Stage.BOOTLOADER: "installing GRUB (simulated)",
}


class RunOutcome(enum.Enum):
    INSTALLED = "installed"  # exit 0: ONIE reboots into the NOS
    FAILED = "failed"  # exit 1: ONIE goes on down its list
    HUNG = "hung"  # never returns: ONIE waits


@dataclass(frozen=True)
class Behaviour:
    report: bool = True
    fail_at: Stage | None = None
    hang: bool = False
    wrong_platform: bool = False


@dataclass(frozen=True)
class Report:
    stage: str
    status: str
    message: str
    url: str
    http_status: int | None = None  # the server's answer; None when none came
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": self.status,
            "message": self.message,
            "url": self.url,
            "http_status": self.http_status,
            "error": self.error,
        }


@dataclass
class InstallerRun:
    outcome: RunOutcome
    stage: str  # where it ended
    message: str
    reports: list[Report] = field(default_factory=list)
    not_reported: str | None = None  # why no report was sent, when none could be

    @property
    def exit_code(self) -> int | None:
        return {RunOutcome.INSTALLED: 0, RunOutcome.FAILED: 1, RunOutcome.HUNG: None}[self.outcome]

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "stage": self.stage,
            "message": self.message,
            "reports": [r.as_dict() for r in self.reports],
            "not_reported": self.not_reported,
        }


class _Reporter:
    """report.sh.j2's `report`: one GET per call, failures noted and ignored."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        identity: OnieIdentity,
        installer_url: str,
        header: dict[str, str],
        enabled: bool,
    ):
        self.session = session
        self.identity = identity
        self.base = report_base(installer_url) if enabled else None
        self.token = token_of(installer_url)
        self.nos = header.get("nos_name")
        self.version = header.get("nos_version")
        self.sent: list[Report] = []
        self.why_not = None
        if not enabled:
            self.why_not = "reports switched off (--no-report)"
        elif self.base is None:
            self.why_not = (
                f"no HTTP server to report to (installer came from {installer_url.split(':', 1)[0]})"
            )

    async def __call__(self, stage: Stage, status: str, message: str) -> None:
        if self.base is None:
            return
        url = report_url(
            self.base,
            stage,
            status,
            nos=self.nos,
            version=self.version,
            platform=self.identity.platform,
            serial=self.identity.serial,
            mac=self.identity.mac,
            message=message,
            token=self.token,
        )
        timeout = aiohttp.ClientTimeout(total=REPORT_TIMEOUT_S)
        try:
            async with self.session.get(url, timeout=timeout) as resp:
                await resp.read()
                self.sent.append(Report(stage.value, status, message, url, resp.status))
        except TimeoutError:
            self.sent.append(Report(stage.value, status, message, url, None, "no answer within 3 s"))
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self.sent.append(Report(stage.value, status, message, url, None, f"{type(exc).__name__}: {exc}"))


async def run_installer(
    session: aiohttp.ClientSession,
    identity: OnieIdentity,
    installer_url: str,
    path: Path,
    behaviour: Behaviour,
    verify: dict[str, Any] | None = None,
) -> InstallerRun:
    """Play the installer at `path` (fetched from `installer_url`) on this switch.

    `verify`: what `--verify` found (checksum, platform); without it the payload is taken as
    intact, and the platform check reads the header's `target_platform` as the real one does."""
    try:
        header = read_header_vars(path)
    except OSError:
        header = {}
    report = _Reporter(session, identity, installer_url, header, behaviour.report)

    def end(outcome: RunOutcome, stage: Stage, message: str) -> InstallerRun:
        return InstallerRun(outcome, stage.value, message, report.sent, report.why_not)

    async def fail(stage: Stage, message: str, detail: str | None = None) -> InstallerRun:
        await report(stage, STATUS_FAILED, message)
        return end(RunOutcome.FAILED, stage, detail or message)

    await report(Stage.STARTED, STATUS_PROGRESS, "installer started")
    if behaviour.hang:
        return end(RunOutcome.HUNG, Stage.STARTED, "the installer hangs (--hang): ONIE waits for it")
    if verify is not None and not verify.get("checksum_ok"):
        problems = [p for p in verify.get("problems", []) if not p.startswith("built for ")]
        return await fail(Stage.VERIFIED, "sha256 mismatch", "; ".join(problems) or "sha256 mismatch")
    if behaviour.fail_at is Stage.VERIFIED:
        return await fail(Stage.VERIFIED, "simulated failure (--fail-at verified)")
    await report(Stage.VERIFIED, STATUS_PROGRESS, "payload verified")
    target = header.get("target_platform") or (verify or {}).get("platform")
    platform = identity.platform or "unknown"
    if behaviour.wrong_platform or (target and target != identity.platform):
        why = (
            f"built for {target}, this switch is {platform}"
            if target
            else "wrong platform (--wrong-platform)"
        )
        return await fail(Stage.VERIFIED, f"wrong platform {platform}", why)
    for stage in (Stage.STARTED, Stage.PARTITIONED, Stage.PAYLOAD, Stage.BOOTLOADER):
        if stage is not Stage.STARTED:  # install.sh: the header already reported `started`
            await report(stage, STATUS_PROGRESS, _STAGE_TEXT[stage])
        if behaviour.fail_at is stage:
            return await fail(stage, f"simulated failure (--fail-at {stage.value})")
    await report(Stage.COMPLETE, STATUS_OK, "installed (simulated)")
    return end(RunOutcome.INSTALLED, Stage.COMPLETE, "installed (simulated)")
