"""Secrets read from files: ``<VARIABLE>_FILE`` (compose/Kubernetes secrets) and the local services'
generated password, whose mode is checked on every read."""

from __future__ import annotations

import stat
from pathlib import Path

from config.exceptions import ConfigError


def read_secret_file(path: Path, variable: str) -> str:
    """The secret in ``path`` without its trailing newline; ``variable`` names it in errors."""
    try:
        return path.expanduser().read_text().strip()
    except OSError as e:
        raise ConfigError(f"{variable}={path} cannot be read: {e.strerror}.") from e


def check_private(path: Path) -> None:
    """Refuses a password file that its group or other users may read or write (say which)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return
    who = [
        name
        for name, read, write in (("its group", 0o040, 0o020), ("other users", 0o004, 0o002))
        if mode & (read | write)
    ]
    what = [verb for verb, bits in (("read", 0o044), ("write", 0o022)) if mode & bits]
    raise ConfigError(
        f"{path} (mode {mode:04o}) can be {' and '.join(what) or 'opened'} by "
        f"{' and '.join(who) or 'its group or others'}: a password file must be private; "
        f"run `chmod 600 {path}`."
    )


def read_private_file(path: Path) -> str:
    """The password in ``path`` after `check_private`."""
    check_private(path)
    return path.read_text().strip()
