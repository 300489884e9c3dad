"""Detached servers: started in their own session, found by pid file, stopped with a deadline."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from config.exceptions import ServicesError

MARKER_PROPERTY = "-Dtastegraph.service="


def marker(name: str, home: Path) -> str:
    """A JVM argument that tells our server processes apart from any other (pid reuse included)."""
    return f"{MARKER_PROPERTY}{name}@{home}"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the state follows the parenthesised command name, which may itself hold spaces
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def alive(pid: int) -> bool:
    """True when ``pid`` runs (exited children are reaped; zombies count as exited)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(pid_file: Path, mark: str) -> int | None:
    """The pid in ``pid_file`` when that process runs and carries ``mark`` on its command line."""
    pid = read_pid(pid_file)
    if pid is None or not alive(pid):
        return None
    cmdline = _cmdline(pid)
    if cmdline is not None and mark not in cmdline:
        return None  # the pid was reused by another program
    return pid


def spawn(argv: Sequence[str], log_file: Path, pid_file: Path) -> int:
    """Starts ``argv`` detached (own session, stdin /dev/null, output to ``log_file``).

    The command must use absolute paths only: it runs in the caller's working directory.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawn(
            argv[0], list(argv), dict(os.environ), file_actions=actions, setsid=True
        )
    except OSError as e:
        raise ServicesError(f"could not start {argv[0]}: {e}") from e
    pid_file.write_text(f"{pid}\n")
    _wait_exec(pid, list(argv))
    return pid


def _wait_exec(pid: int, argv: list[str], timeout_s: float = 10.0) -> None:
    """Waits until the child shows ``argv`` (posix_spawn may return before the exec is visible)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive(pid):
        cmdline = _cmdline(pid)
        if cmdline is None or cmdline[: len(argv)] == argv:
            return
        time.sleep(0.01)


def stop(pid: int, timeout_s: float) -> bool:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL the process group; True if it had to kill."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_exit(pid, timeout_s):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_exit(pid, 10.0):
        raise ServicesError(f"process {pid} survived SIGKILL")
    return True


def wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Serialises `up` and `down` of one home (a second caller waits for the first)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def log_excerpt(paths: Sequence[Path], lines: int = 12) -> str:
    """What explains a failed start: the first error lines of the logs, else their last lines."""
    errors: list[str] = []
    tails: list[str] = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        errors += [t for t in text if " ERROR " in t or " FATAL " in t or "Exception:" in t]
        tails += text[-lines:]
    return "\n".join((errors or tails)[:lines])


def ephemeral_ports() -> range:
    """The kernel's range for outgoing connections' local ports (a listener there may lose)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _argfile_quote(arg: str) -> str:
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def run_java(
    java: str,
    args: Sequence[str],
    workdir: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``java args...`` with the arguments in a private argument file (``java @file``, mode
    600, deleted afterwards), so a secret among them is never on a command line that `ps` or
    /proc/<pid>/cmdline shows."""
    workdir.mkdir(parents=True, exist_ok=True)
    argfile = workdir / f".java-args-{os.getpid()}-{time.monotonic_ns()}"
    fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(_argfile_quote(a) for a in args) + "\n")
        return subprocess.run(
            [java, f"@{argfile}"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    finally:
        argfile.unlink(missing_ok=True)
