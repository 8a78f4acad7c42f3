"""A private Mosquitto broker on a free loopback port, for the tests and the HIL runner.

    with Mosquitto.start(tmp_dir) as broker:                 # or Mosquitto.start(tmp_dir, users={"u": "pw"})
        bridge_url = broker.url                              # "mqtt://127.0.0.1:PORT"
        broker.kill()                                        # SIGKILL: an outage, no clean goodbye
        broker.restart()                                     # same port, same configuration

The broker is the real binary from the system packages (`make system-deps`): its configuration is
written into `tmp_dir` (a listener on 127.0.0.1 only, anonymous clients allowed unless `users` is
given, then a password file made with `mosquitto_passwd`). `start` and `restart` return once the port
accepts TCP connections, within a bounded time, and raise `MosquittoError` naming the binary and its
output otherwise.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["Mosquitto", "MosquittoError", "TlsFiles", "find_binary", "free_port", "make_test_certificates"]

SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
"""Debian installs the broker in /usr/sbin, which is not on every user's PATH."""
READY_TIMEOUT_S = 10.0
_POLL_S = 0.02
"""Interval between connection attempts while waiting for the port (a readiness poll, bounded by
READY_TIMEOUT_S; it decides nothing else)."""


class MosquittoError(RuntimeError):
    """The broker could not be found, configured or started."""


def find_binary(name: str) -> str:
    """The path of a Mosquitto program (`mosquitto`, `mosquitto_pub`, `mosquitto_passwd`...)."""
    found = shutil.which(name)
    if found is None:
        for directory in SEARCH_DIRS:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found = str(candidate)
                break
    if found is None:
        raise MosquittoError(
            f"{name!r} not found on PATH nor in {', '.join(SEARCH_DIRS)}: install the mosquitto and "
            "mosquitto-clients system packages (make system-deps)"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS listener: the CA that signed the broker's certificate, and that certificate
    with its key (`make_test_certificates` makes a throwaway set)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_test_certificates(directory: str | os.PathLike[str], host: str = "127.0.0.1") -> TlsFiles:
    """A throwaway CA and a broker certificate for `host` (and localhost), made with the openssl CLI:
    for tests of TLS against a private broker, never for a real one."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MosquittoError("'openssl' not found on PATH: needed to make test certificates")
    ca_key, ca, key, csr, cert, ext = (
        d / n for n in ("ca.key", "ca.pem", "broker.key", "broker.csr", "broker.pem", "san.ext")
    )
    ext.write_text(f"subjectAltName = IP:{host}, DNS:localhost\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=cementguard test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={host}"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run([openssl, *map(str, step)], capture_output=True, text=True)
        if done.returncode != 0:
            raise MosquittoError(f"openssl {step[0]} failed: {done.stderr.strip()}")
    return TlsFiles(ca, cert, key)


@dataclass
class Mosquitto:
    """One broker process. Use `Mosquitto.start(...)` as a context manager; leaving it kills the broker."""

    workdir: Path
    port: int
    users: Mapping[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None
    """Serve MQTT over TLS with these files (the URL becomes mqtts://)."""
    tcp_nodelay: bool = False
    """Mosquitto's `set_tcp_nodelay`; off (Nagle's algorithm on) is Mosquitto's own default, so the
    tests and benchmarks see what a lab broker installed as it comes does.
    bench/mqtt_stop_latency.py --broker-nodelay measures the difference."""
    acl_file: Path | None = None
    """Mosquitto ACL file (e.g. the repository's deploy/mosquitto/cementguard.acl); None: none."""
    persistence: bool = False
    """Keep retained messages and persistent sessions across `restart()` (in `workdir`)."""
    max_packet_size: int | None = None
    """Mosquitto's `max_packet_size` (bytes): a client sending a bigger packet is disconnected."""
    host: str = "127.0.0.1"
    binary: str = field(default_factory=lambda: find_binary("mosquitto"))
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @classmethod
    def start(
        cls,
        workdir: str | os.PathLike[str],
        *,
        users: Mapping[str, str] | None = None,
        port: int | None = None,
        tls: TlsFiles | None = None,
        tcp_nodelay: bool = False,
        timeout_s: float = READY_TIMEOUT_S,
        acl_file: str | os.PathLike[str] | None = None,
        persistence: bool = False,
        max_packet_size: int | None = None,
    ) -> Mosquitto:
        """Write the configuration into `workdir` and start the broker; `users` (name -> password)
        turns anonymous access off. Retries with another free port if the chosen one was taken."""
        directory = Path(workdir)
        directory.mkdir(parents=True, exist_ok=True)
        attempts = 1 if port is not None else 3
        last: MosquittoError | None = None
        for _ in range(attempts):
            chosen = port if port is not None else free_port()
            broker = cls(
                directory,
                chosen,
                dict(users or {}),
                tls,
                tcp_nodelay,
                Path(acl_file) if acl_file is not None else None,
                persistence,
                max_packet_size,
            )
            try:
                broker._write_config()
                broker._launch(timeout_s)
                return broker
            except MosquittoError as exc:
                last = exc
                broker.kill()
                if "Address already in use" not in str(exc):
                    raise
        assert last is not None
        raise last

    # -- where it is -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"mosquitto-{self.port}.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"mosquitto-{self.port}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- life ------------------------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing its clients' sessions (an outage)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Kill the broker if it runs, start it again on the same port with the same configuration."""
        self.kill()
        self._launch(timeout_s)

    def __enter__(self) -> Mosquitto:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def log(self) -> str:
        """What the broker wrote (its log file), for failure messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    # -- inside ----------------------------------------------------------------------------------
    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            *(
                ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
                if self.persistence
                else ["persistence false"]
            ),
            *([f"acl_file {self.acl_file}"] if self.acl_file is not None else []),
            *([f"max_packet_size {self.max_packet_size}"] if self.max_packet_size is not None else []),
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"set_tcp_nodelay {'true' if self.tcp_nodelay else 'false'}",
            *(
                [
                    f"cafile {self.tls.ca_file}",
                    f"certfile {self.tls.cert_file}",
                    f"keyfile {self.tls.key_file}",
                ]
                if self.tls
                else []
            ),
            # Running as root, Mosquitto would switch to the 'mosquitto' user, who cannot read files
            # in a private temporary directory; as anyone else the option is ignored.
            f"user {getpass.getuser()}",
        ]
        if self.users:
            password_file = self.workdir / f"passwd-{self.port}"
            password_file.write_text("")
            passwd = find_binary("mosquitto_passwd")
            for name, password in self.users.items():
                done = subprocess.run(
                    [passwd, "-b", str(password_file), name, password], capture_output=True, text=True
                )
                if done.returncode != 0:
                    raise MosquittoError(f"{passwd} failed for user {name!r}: {done.stderr.strip()}")
            password_file.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _launch(self, timeout_s: float) -> None:
        self.starts += 1
        stderr_path = self.workdir / f"mosquitto-{self.port}.stderr"
        with stderr_path.open("wb") as stderr_file:  # a file, not a pipe nobody drains
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
            )
        deadline = time.monotonic() + timeout_s
        while not _accepts(self.host, self.port):
            if self.proc.poll() is not None:
                stderr = stderr_path.read_text(errors="replace")
                raise MosquittoError(
                    f"{self.binary} -c {self.config_path} exited with {self.proc.returncode} before "
                    f"listening on {self.host}:{self.port}: {(stderr + self.log()).strip()}"
                )
            if time.monotonic() > deadline:
                raise MosquittoError(
                    f"{self.binary} did not accept connections on {self.host}:{self.port} within "
                    f"{timeout_s:g} s: {self.log().strip()}"
                )
            time.sleep(_POLL_S)
