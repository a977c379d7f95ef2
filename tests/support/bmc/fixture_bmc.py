"""A small Redfish BMC on 127.0.0.1 whose shape and misbehaviour are chosen per test: one quirk
path each (system at /Systems/Self, ResetType only via ActionInfo, If-Match required, 503 +
Retry-After, PATCH answered but not applied, SessionService, task monitors, several systems,
serial only on the Chassis, sessions answered 204, links and redirects to another origin,
403, multi-message errors). It records every request so tests can assert what the client sent
(If-Match, logout DELETE, credentials, ...). A fixture standing in for vendor behaviour: each
quirk's comment says which vendor or mockup it mirrors."""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = "/redfish/v1"


def _err(message_id: str, message: str) -> dict:
    return {
        "error": {
            "code": "Base.1.8.GeneralError",
            "message": "A general error has occurred. See ExtendedInfo for more information.",
            "@Message.ExtendedInfo": [{"MessageId": message_id, "Message": message, "Severity": "Warning"}],
        }
    }


@dataclass
class Quirks:
    system_id: str = "Self"
    reset_via_actioninfo: bool = False
    allowed_resets: tuple[str, ...] = ("On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle")
    require_if_match: bool = False
    weak_etag: bool = False  # hand out W/"n" but only accept "n" (iLO 5)
    busy_503: int = 0  # answer this many PATCH/POST with 503 + Retry-After first
    retry_after: str = "1"
    patch_ignored: bool = False  # PATCH on the system answers 200 and changes nothing
    settings_object: bool = False  # offer @Redfish.Settings at <system>/SD (AMI)
    sessions: bool = False
    reset_as_task: bool = False  # Reset answers 202 + task monitor
    task_polls: int = 2  # monitor answers 202 this many times before the Task
    task_fails: bool = False
    manufacturer: str = "Fixture Inc."
    refuse_mode: bool = False  # 400 SYS444 when BootSourceOverrideMode is sent (Dell 13G)
    no_etag: bool = False  # never hand out an ETag (with require_if_match: unusable -> 428)
    expire_sessions_after: int = 0  # drop a session token after this many uses (0: never)
    barrier: threading.Barrier | None = None  # hold the first GET of the root until N clients wait
    # More members of the Systems collection, each with its own power state: a blade chassis or
    # partitioned server behind one BMC (DMTF public-bladed mockup, NVIDIA GB200 and DPU BMCs).
    extra_systems: tuple[str, ...] = ()
    # System SerialNumber "" and no Model; both on the Chassis it links to (seen in the
    # issue's survey of vendor mockups: identity kept on the Chassis).
    serial_on_chassis: bool = False
    session_204: bool = False  # POST Sessions answers 204 No Content, token and Location only
    session_no_token: bool = False  # POST Sessions answers 201 + Location but no X-Auth-Token
    # Absolute URLs to another origin (a hostile or misconfigured BMC; no vendor needed):
    foreign_task_monitor: str | None = None  # Reset answers 202 with this Location
    foreign_session_location: str | None = None  # POST Sessions answers with this Location
    foreign_system_member: str | None = None  # the Systems collection lists this @odata.id
    redirect_systems_to: str | None = None  # GET /Systems answers 302 to this URL
    forbid_resets: bool = False  # 403 InsufficientPrivilege on Reset (a ReadOnly account)
    # PATCH refused with a generic first message and the real one second (iDRAC style).
    patch_error: tuple[str, ...] = ()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: object


@dataclass
class FixtureBmc:
    quirks: Quirks = field(default_factory=Quirks)
    username: str = "admin"
    password: str = "fixture-pass"
    power: str = "Off"
    requests: list[Seen] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    sessions_live: set[str] = field(default_factory=set)
    sessions_deleted: list[str] = field(default_factory=list)
    sessions_expired: list[str] = field(default_factory=list)
    token_uses: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.sys_path = f"{ROOT}/Systems/{self.quirks.system_id}"
        self.powers: dict[str, str] = {f"{ROOT}/Systems/{x}": "Off" for x in self.quirks.extra_systems}
        self.reset_log: list[tuple[str, str]] = []  # (system Id, ResetType)
        self.boot = {
            "BootSourceOverrideEnabled": "Disabled",
            "BootSourceOverrideTarget": "None",
            "BootSourceOverrideMode": "UEFI",
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd", "Cd", "UefiHttp"],
        }
        self.pending_boot: dict = {}
        self.etag_n = 1
        self.busy_left = self.quirks.busy_503
        self.task_polls_left = self.quirks.task_polls
        self._lock = threading.Lock()
        self._token_n = 0

    # --- the tree -----------------------------------------------------------------------------------

    def etag(self) -> str:
        return f'W/"{self.etag_n}"' if self.quirks.weak_etag else f'"{self.etag_n}"'

    def system(self, path: str | None = None) -> dict:
        if path and path != self.sys_path:
            return self.extra_system(path)
        reset: dict = {"target": f"{self.sys_path}/Actions/ComputerSystem.Reset"}
        if self.quirks.reset_via_actioninfo:
            reset["@Redfish.ActionInfo"] = f"{self.sys_path}/ResetActionInfo"
        else:
            reset["ResetType@Redfish.AllowableValues"] = list(self.quirks.allowed_resets)
        data = {
            "@odata.id": self.sys_path,
            "Id": self.quirks.system_id,
            "Manufacturer": self.quirks.manufacturer,
            "Model": "FX-1000",
            "SerialNumber": "FX123456",
            "BiosVersion": "2.4.1",
            "UUID": "00000000-0000-4000-8000-000000000001",
            "PowerState": self.power,
            "Boot": dict(self.boot),
            "Actions": {"#ComputerSystem.Reset": reset},
            "EthernetInterfaces": {"@odata.id": f"{self.sys_path}/EthernetInterfaces"},
        }
        if not self.quirks.no_etag:
            data["@odata.etag"] = self.etag()
        if self.quirks.settings_object:
            data["@Redfish.Settings"] = {"SettingsObject": {"@odata.id": f"{self.sys_path}/SD"}}
        if self.quirks.serial_on_chassis:
            data["SerialNumber"] = ""
            del data["Model"]
            data["Links"] = {"Chassis": [{"@odata.id": f"{ROOT}/Chassis/1U"}]}
        return data

    def extra_system(self, path: str) -> dict:
        sid = path.rsplit("/", 1)[-1]
        return {
            "@odata.id": path,
            "Id": sid,
            "Manufacturer": self.quirks.manufacturer,
            "Model": f"Blade {sid}",
            "SerialNumber": f"BLADE-{sid}",
            "PowerState": self.powers[path],
            "Boot": dict(self.boot),
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": f"{path}/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": list(self.quirks.allowed_resets),
                }
            },
        }

    def get(self, path: str) -> dict | None:
        path = path.rstrip("/")
        if path == ROOT:
            root = {
                "@odata.id": ROOT + "/",
                "Systems": {"@odata.id": f"{ROOT}/Systems"},
                "Managers": {"@odata.id": f"{ROOT}/Managers"},
            }
            if self.quirks.sessions:
                root["SessionService"] = {"@odata.id": f"{ROOT}/SessionService"}
                root["Links"] = {"Sessions": {"@odata.id": f"{ROOT}/SessionService/Sessions"}}
            return root
        if path == f"{ROOT}/Systems":
            members = [self.sys_path, *self.powers]
            if self.quirks.foreign_system_member:
                members.append(self.quirks.foreign_system_member)
            return {"Members": [{"@odata.id": m} for m in members], "Members@odata.count": len(members)}
        if path == self.sys_path or path in self.powers:
            return self.system(path)
        if path == f"{ROOT}/Chassis/1U":
            return {"@odata.id": path, "Id": "1U", "SerialNumber": "CH-778899", "Model": "Chassis-X"}
        if path == f"{self.sys_path}/SD":
            return {"@odata.id": path, "Boot": dict(self.pending_boot)}
        if path == f"{self.sys_path}/ResetActionInfo":
            return {
                "@odata.id": path,
                "Parameters": [
                    {
                        "Name": "ResetType",
                        "Required": True,
                        "AllowableValues": list(self.quirks.allowed_resets),
                    }
                ],
            }
        if path == f"{self.sys_path}/EthernetInterfaces":
            return {"Members": [{"@odata.id": f"{path}/NIC1"}, {"@odata.id": f"{path}/NIC2"}]}
        if path.startswith(f"{self.sys_path}/EthernetInterfaces/NIC"):
            n = path[-1]
            return {"@odata.id": path, "Id": f"NIC{n}", "MACAddress": f"AA:BB:CC:00:00:0{n}"}
        return None


class _Handler(BaseHTTPRequestHandler):
    bmc: FixtureBmc
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: object = None, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        b = self.bmc
        token = self.headers.get("X-Auth-Token")
        if token and token in b.sessions_live:
            b.token_uses[token] = b.token_uses.get(token, 0) + 1
            if b.quirks.expire_sessions_after and b.token_uses[token] > b.quirks.expire_sessions_after:
                b.sessions_live.discard(token)
                b.sessions_expired.append(token)
                return False
            return True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            return user == b.username and pw == b.password
        return False

    def _handle(self, method: str) -> None:
        b = self.bmc
        q = b.quirks
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?")[0]
        if q.barrier is not None and method == "GET" and path.rstrip("/") == ROOT:
            try:
                q.barrier.wait()
            except threading.BrokenBarrierError:
                return self._send(503, _err("Fixture.1.0.NotConcurrent", "the other client never came"))
        with b._lock:
            b.requests.append(Seen(method, path, dict(self.headers), body))
            if path.rstrip("/") == ROOT and method == "GET":
                return self._send(200, b.get(path))
            if q.sessions and path == f"{ROOT}/SessionService/Sessions" and method == "POST":
                if body.get("UserName") != b.username or body.get("Password") != b.password:
                    return self._send(401, _err("Base.1.8.NoValidSession", "Invalid username or password"))
                b._token_n += 1
                token = f"tok{b._token_n}"
                b.sessions_live.add(token)
                loc = f"{ROOT}/SessionService/Sessions/{b._token_n}"
                if q.foreign_session_location:
                    return self._send(
                        201, {}, {"X-Auth-Token": token, "Location": q.foreign_session_location}
                    )
                if q.session_204:
                    return self._send(204, None, {"X-Auth-Token": token, "Location": loc})
                if q.session_no_token:
                    return self._send(201, {"@odata.id": loc}, {"Location": loc})
                return self._send(201, {"@odata.id": loc}, {"X-Auth-Token": token, "Location": loc})
            if not self._authorized():
                return self._send(401, _err("Base.1.8.InsufficientPrivilege", "Authentication required"))
            if q.sessions and path.startswith(f"{ROOT}/SessionService/Sessions/") and method == "DELETE":
                n = path.rsplit("/", 1)[-1]
                b.sessions_live.discard(f"tok{n}")
                b.sessions_deleted.append(path)
                return self._send(204)
            if method in ("PATCH", "POST") and b.busy_left > 0:
                b.busy_left -= 1
                return self._send(
                    503,
                    _err("Base.1.8.ServiceTemporarilyUnavailable", "busy"),
                    {"Retry-After": q.retry_after},
                )
            if method == "GET" and path.startswith(f"{ROOT}/TaskService/TaskMonitors/"):
                if b.task_polls_left > 0:
                    b.task_polls_left -= 1
                    return self._send(
                        202, {"TaskState": "Running", "PercentComplete": 50}, {"Retry-After": "0"}
                    )
                if q.task_fails:
                    return self._send(
                        200,
                        {
                            "TaskState": "Exception",
                            "Messages": [{"MessageId": "Fixture.1.0.ResetFailed", "Message": "PSU fault"}],
                        },
                    )
                b.power = "On"
                return self._send(200, {"TaskState": "Completed", "PercentComplete": 100})
            if method == "GET" and q.redirect_systems_to and path == f"{ROOT}/Systems":
                return self._send(302, None, {"Location": q.redirect_systems_to})
            if method == "GET":
                data = b.get(path)
                if data is None:
                    return self._send(404, _err("Base.1.8.ResourceMissingAtURI", f"{path} not found"))
                etag = path.rstrip("/") == b.sys_path and not q.no_etag
                return self._send(200, data, {"ETag": b.etag()} if etag else None)
            extra = path.removesuffix("/Actions/ComputerSystem.Reset")
            if method == "POST" and extra in b.powers and path.endswith("/Actions/ComputerSystem.Reset"):
                rt = (body or {}).get("ResetType")
                b.reset_log.append((extra.rsplit("/", 1)[-1], rt))
                b.powers[extra] = "Off" if rt in ("ForceOff", "GracefulShutdown") else "On"
                return self._send(204)
            if method == "POST" and path == f"{b.sys_path}/Actions/ComputerSystem.Reset":
                if q.forbid_resets:
                    return self._send(
                        403,
                        _err(
                            "Base.1.8.InsufficientPrivilege",
                            "There are insufficient privileges for the account",
                        ),
                    )
                rt = (body or {}).get("ResetType")
                if rt not in q.allowed_resets:
                    return self._send(
                        400, _err("Base.1.8.ActionParameterValueNotInList", f"ResetType {rt} is not allowed")
                    )
                b.resets.append(rt)
                b.reset_log.append((q.system_id, rt))
                if q.foreign_task_monitor:
                    return self._send(202, None, {"Location": q.foreign_task_monitor})
                if q.reset_as_task:
                    return self._send(202, None, {"Location": f"{ROOT}/TaskService/TaskMonitors/1"})
                if rt in ("On", "ForceOn", "ForceRestart", "GracefulRestart", "PowerCycle"):
                    b.power = "On"
                elif rt in ("ForceOff", "GracefulShutdown"):
                    b.power = "Off"
                return self._send(204)
            if method == "PATCH" and path in (b.sys_path, f"{b.sys_path}/SD"):
                if path == b.sys_path and q.require_if_match:
                    tag = self.headers.get("If-Match")
                    if not tag:
                        return self._send(428, _err("Base.1.8.PreconditionRequired", "If-Match required"))
                    if tag != f'"{b.etag_n}"':
                        return self._send(412, _err("Base.1.8.PreconditionFailed", "ETag mismatch"))
                boot = (body or {}).get("Boot") or {}
                if q.patch_error:
                    return self._send(
                        400,
                        {
                            "error": {
                                "code": "Base.1.8.GeneralError",
                                "message": "A general error has occurred. See ExtendedInfo for more information.",
                                "@Message.ExtendedInfo": [
                                    {"MessageId": f"Fixture.1.0.E{i}", "Message": m}
                                    for i, m in enumerate(q.patch_error)
                                ],
                            }
                        },
                    )
                if q.refuse_mode and "BootSourceOverrideMode" in boot:
                    return self._send(
                        400,
                        _err("IDRAC.2.8.SYS444", "BootSourceOverrideMode is not supported on this system"),
                    )
                if path.endswith("/SD"):
                    b.pending_boot.update(boot)
                    return self._send(204)
                if not q.patch_ignored:
                    b.boot.update(boot)
                    b.etag_n += 1
                return self._send(200, b.system())
            return self._send(405, _err("Base.1.8.OperationNotAllowed", f"{method} {path}"))

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")


class FixtureServer:
    """Context manager: serve `bmc` over HTTP on 127.0.0.1:<free port>."""

    def __init__(self, bmc: FixtureBmc):
        self.bmc = bmc
        handler = type("Handler", (_Handler,), {"bmc": bmc})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"redfish+http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts TCP connections and never answers: a hung BMC web server."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"redfish+http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self._conns.append(conn)
            except OSError:
                continue

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._thread.join(2)
        for c in self._conns:
            c.close()
        self.sock.close()


def clone(q: Quirks, **changes) -> Quirks:
    new = copy.copy(q)
    for k, v in changes.items():
        setattr(new, k, v)
    return new


class TrickleServer:
    """Reads a request, then answers it one byte per `interval` seconds: a hostile (or badly
    broken) BMC web server that never trips a per-read timeout. No vendor needed for this one."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"redfish+http://127.0.0.1:{self.port}"
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            for i in range(len(self.ANSWER)):
                if self._stop.wait(self.interval):
                    return
                try:
                    conn.sendall(self.ANSWER[i : i + 1])
                except OSError:
                    return  # the client gave up: what the test wants
                self.bytes_sent += 1

    def __enter__(self) -> TrickleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
