"""The external tools the services need: a Java 17+ runtime and Maven."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from config.exceptions import ServicesError

MIN_JAVA = 17
_INSTALL_JAVA = "install a Java 17 or newer JDK (e.g. `apt-get install -y openjdk-17-jdk-headless`)"


def java_major(version_output: str) -> int | None:
    """The major version in ``java -version`` output: 1.8.0_x -> 8, 17.0.15 -> 17, 21 -> 21."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not m:
        return None
    major = int(m.group(1))
    if major == 1 and m.group(2):
        major = int(m.group(2))
    return major


def find_java() -> str:
    """Path of a ``java`` of version 17 or newer ($JAVA_HOME first, then PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if not java:
        raise ServicesError(f"No `java` found: {_INSTALL_JAVA}.")
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ServicesError(f"`{java} -version` failed ({e}): {_INSTALL_JAVA}.") from e
    major = java_major(out.stderr + out.stdout)
    if major is None or major < MIN_JAVA:
        raise ServicesError(f"`{java}` is Java {major or 'of unknown version'}: {_INSTALL_JAVA}.")
    return java


def find_mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServicesError(
            "No `mvn` found: install Maven (e.g. `apt-get install -y maven`) to download "
            "Kafka and Neo4j from Maven Central."
        )
    return mvn
