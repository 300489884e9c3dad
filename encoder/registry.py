"""The model registry: one directory per encoder version, and an atomic ``current`` pointer.

Layout under the registry root (by default ``settings.home / "models"``)::

    root/
      current                  JSON {"version", "previous", "updated_at"}; replaced atomically
      versions/
        base/metadata.json     the untuned model: {"source": <model dir or package name>, ...}
        ft-0001/               a plain Hugging Face model directory (LoRA merged before saving):
          config.json, model.safetensors, tokenizer files, modules.json, 1_Pooling/ ...
          metadata.json        {version, parent_version, examples, metrics_before, metrics_after,
                                created_at, status, ...}
      events.jsonl             one line per registry change (created, promoted, rejected, ...)
      serving/<worker>.json    what each worker actually runs: {worker, wanted, serving,
                                error, failures, updated_at} (`encoder.serving.report_serving`)

``status`` is one of ``training`` (being written), ``candidate`` (weights saved, not yet judged),
``promoted``, ``rejected`` (weights deleted, metadata kept) or ``failed`` (the run crashed; weights,
if any, deleted). Only versions with weights (``promoted``, ``candidate``, ``base``) can become
current. Every metadata and pointer write goes to a temporary file first and then ``os.replace``,
so a reader sees either the old or the new content, never a torn one. A crash never moves the
pointer: only `promote` and `rollback` do.

``current`` is the version workers are asked to run; how a worker notices it changed and reports
what it really runs is in `encoder.serving`.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoder.exceptions import EncoderError
from encoder.files import atomic_write_json

BASE_VERSION = "base"
STATUSES = ("training", "candidate", "promoted", "rejected", "failed")
_VERSION_RE = re.compile(r"^ft-(\d{4,})$")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class RegistryError(EncoderError):
    """A registry operation is not possible (unknown version, version without weights, ...)."""


def timestamp() -> str:
    """The registry's time stamps: UTC, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class VersionInfo:
    version: str
    path: Path
    metadata: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.metadata.get("status", ""))

    @property
    def parent_version(self) -> str | None:
        p = self.metadata.get("parent_version")
        return None if p is None else str(p)

    @property
    def model_ref(self) -> str:
        """What `load_encoder(model=...)` takes: the version directory, or the base's source."""
        if self.version == BASE_VERSION:
            return str(self.metadata.get("source", ""))
        return str(self.path)

    @property
    def has_weights(self) -> bool:
        if self.version == BASE_VERSION:
            return bool(self.metadata.get("source"))
        return any((self.path / w).exists() for w in _WEIGHT_FILES)


class ModelRegistry:
    """Versioned encoder directories under ``root`` with an atomically replaced current pointer."""

    def __init__(self, root: Path | str, base_source: str | None = None) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.pointer_path = self.root / "current"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        if base_source is not None:
            self.ensure_base(base_source)

    # -- base ------------------------------------------------------------------------------------
    def ensure_base(self, source: str) -> VersionInfo:
        """Registers the untuned model (a directory or package name) as version ``base``."""
        path = self.versions_dir / BASE_VERSION
        meta_path = path / "metadata.json"
        if meta_path.exists():
            meta = self._read_meta(path)
            if meta.get("source") == source:
                return VersionInfo(BASE_VERSION, path, meta)
        meta = {
            "version": BASE_VERSION,
            "parent_version": None,
            "source": source,
            "examples": 0,
            "metrics_before": None,
            "metrics_after": None,
            "created_at": timestamp(),
            "status": "promoted",
        }
        atomic_write_json(meta_path, meta)
        return VersionInfo(BASE_VERSION, path, meta)

    # -- reading ---------------------------------------------------------------------------------
    def _read_meta(self, path: Path) -> dict[str, Any]:
        try:
            with open(path / "metadata.json", encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError as e:
            raise RegistryError(f"no metadata in {path}") from e
        except ValueError as e:
            raise RegistryError(f"unreadable metadata in {path}: {e}") from e
        if not isinstance(data, dict):
            raise RegistryError(f"unreadable metadata in {path}")
        return data

    def get(self, version: str) -> VersionInfo:
        if "/" in version or version in ("", ".", ".."):
            raise RegistryError(f"invalid version name {version!r}")
        path = self.versions_dir / version
        if not (path / "metadata.json").exists():
            known = ", ".join(v.version for v in self.list()) or "none"
            raise RegistryError(f"unknown model version {version!r} (known: {known})")
        return VersionInfo(version, path, self._read_meta(path))

    def list(self) -> list[VersionInfo]:
        """Every version with metadata, oldest first (``base`` first)."""
        out = []
        for path in self.versions_dir.iterdir():
            if path.is_dir() and (path / "metadata.json").exists():
                with contextlib.suppress(RegistryError):
                    out.append(VersionInfo(path.name, path, self._read_meta(path)))
        return sorted(out, key=lambda v: (v.version != BASE_VERSION, _version_number(v.version)))

    def read_pointer(self) -> dict[str, Any] | None:
        try:
            with open(self.pointer_path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise RegistryError(f"unreadable current pointer {self.pointer_path}: {e}") from e
        return data if isinstance(data, dict) else None

    def current_version(self) -> str:
        """The current version's name; ``base`` when nothing was ever promoted."""
        data = self.read_pointer()
        return str(data["version"]) if data and data.get("version") else BASE_VERSION

    def current(self) -> VersionInfo:
        return self.get(self.current_version())

    # -- writing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, blocking: bool = True) -> Iterator[bool]:
        """An exclusive advisory lock on the registry (fcntl); yields False when not acquired."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(f.fileno(), flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def create_version(self, parent_version: str, examples: int, **extra: Any) -> VersionInfo:
        """Reserves the next ``ft-NNNN`` directory (atomic mkdir) with status ``training``."""
        n = 1 + max((_version_number(p.name) for p in self.versions_dir.iterdir()), default=0)
        while True:
            version = f"ft-{n:04d}"
            path = self.versions_dir / version
            try:
                path.mkdir()
                break
            except FileExistsError:
                n += 1
        meta = {
            "version": version,
            "parent_version": parent_version,
            "examples": examples,
            "metrics_before": None,
            "metrics_after": None,
            "created_at": timestamp(),
            "status": "training",
            **extra,
        }
        atomic_write_json(path / "metadata.json", meta)
        self._log("created", version, parent=parent_version)
        return VersionInfo(version, path, meta)

    def update(self, version: str, **fields: Any) -> VersionInfo:
        """Merges ``fields`` into the version's metadata (atomic rewrite)."""
        info = self.get(version)
        if "status" in fields and fields["status"] not in STATUSES:
            raise RegistryError(f"invalid status {fields['status']!r}")
        meta = {**info.metadata, **fields}
        atomic_write_json(info.path / "metadata.json", meta)
        return VersionInfo(version, info.path, meta)

    def discard(
        self, version: str, status: str, *, keep_weights: bool = False, **fields: Any
    ) -> VersionInfo:
        """Deletes the version's weights; keeps its metadata, with ``status`` rejected or failed.

        ``keep_weights`` (a rejected candidate kept for an offline comparison, e.g. `tastegraph
        evaluate --model`): the weights stay; the status still forbids promoting or rolling back
        to it."""
        if version == BASE_VERSION:
            raise RegistryError("the base version cannot be discarded")
        if version == self.current_version():
            raise RegistryError(f"{version} is current; roll back first")
        if keep_weights and status != "rejected":
            raise RegistryError("only a rejected candidate can keep its weights")
        info = self.update(
            version, status=status, discarded_at=timestamp(), weights_kept=keep_weights, **fields
        )
        if keep_weights:
            self._log(status, version, reason=fields.get("reason"), weights_kept=True)
            return info
        for child in info.path.iterdir():
            if child.name == "metadata.json":
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()
        self._log(status, version, reason=fields.get("reason"))
        return self.get(version)

    def _set_current(self, version: str, action: str) -> None:
        previous = self.current_version()
        atomic_write_json(
            self.pointer_path,
            {"version": version, "previous": previous, "updated_at": timestamp(), "action": action},
        )
        self._log(action, version, previous=previous)

    def promote(self, version: str) -> VersionInfo:
        """Makes ``version`` current (its weights must exist); status becomes ``promoted``."""
        info = self.get(version)
        if not info.has_weights:
            raise RegistryError(f"{version} has no weights (status {info.status})")
        if info.status in ("training", "failed", "rejected"):
            raise RegistryError(f"{version} cannot be promoted from status {info.status}")
        if version != BASE_VERSION:
            info = self.update(version, status="promoted", promoted_at=timestamp())
        self._set_current(version, "promoted")
        return info

    def rollback(self, version: str | None = None) -> VersionInfo:
        """Makes an earlier version current: ``version``, or by default the current one's parent.

        The version must still have weights (``promoted`` or ``base``).
        """
        if version is None:
            cur = self.current()
            if cur.parent_version is None:
                raise RegistryError(f"{cur.version} has no parent to roll back to")
            version = cur.parent_version
        info = self.get(version)
        if not info.has_weights or info.status != "promoted":
            raise RegistryError(
                f"cannot roll back to {version}: status {info.status}, "
                f"weights {'present' if info.has_weights else 'deleted'}"
            )
        self._set_current(version, "rolled_back")
        return info

    def _log(self, action: str, version: str, **fields: Any) -> None:
        line = {"at": timestamp(), "action": action, "version": version, **fields}
        with open(self.root / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")

    def history(self) -> builtins.list[dict[str, Any]]:
        """Registry changes, oldest first."""
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


def _version_number(name: str) -> int:
    m = _VERSION_RE.match(name)
    return int(m.group(1)) if m else 0


def default_registry_root(home: Path | str) -> Path:
    return Path(home) / "models"


def resolve_model_ref(name: str, registry: ModelRegistry) -> str:
    """What `load_encoder(model=...)` takes for ``name``: a registry version (``ft-0001``,
    ``base``; it must still have weights) or else an existing model directory.

    A name that is both is taken as the version. Raises `RegistryError` for anything else (a
    rejected version whose weights were deleted, an unknown name that is no directory).
    """
    looks_like_version = "/" not in name and name not in ("", ".", "..")
    if looks_like_version and (registry.versions_dir / name / "metadata.json").exists():
        info = registry.get(name)
        if not info.has_weights:
            raise RegistryError(
                f"model version {name} has no weights (status {info.status}): only promoted "
                "versions and base keep theirs"
            )
        return info.model_ref
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise RegistryError(f"{path} is not a model directory (no config.json)")
        return str(path.resolve())
    known = ", ".join(v.version for v in registry.list() if v.has_weights) or "none"
    raise RegistryError(
        f"{name!r} is neither a model version in {registry.root} (with weights: {known}) "
        "nor a model directory"
    )
