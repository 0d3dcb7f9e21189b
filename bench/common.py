"""Small helpers shared by the benchmark modules."""

from __future__ import annotations

import base64
import contextlib
import gc
import importlib.metadata
import importlib.util
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"

ISSUER = "https://issuer.bench.test"
AUDIENCE = "https://api.bench.test"
SCOPE = "items:read"


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def split_jws(token: str) -> tuple[bytes, bytes]:
    """Return (signing input, raw signature) of a compact JWS."""
    head, _, sig = token.rpartition(".")
    return head.encode("ascii"), b64url_decode(sig)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def settle() -> None:
    """Collect garbage between measurements so one run's debris is not billed to the next."""
    gc.collect()


def maxrss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_status_mib(field: str) -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def current_rss_mib() -> float:
    """Current resident set size of this process in MiB (VmRSS, Linux only)."""
    return _proc_status_mib("VmRSS")


def hwm_rss_mib() -> float:
    """Peak RSS of this process image in MiB (VmHWM, Linux only; reset by exec)."""
    return _proc_status_mib("VmHWM")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    names = [
        "authbridge",
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
        "httpx",
        "joserfc",
        "PyJWT",
        "cryptography",
        "uvloop",
        "httptools",
    ]
    found = {name: package_version(name) for name in names}
    try:  # the imported module wins: it may come from src/ rather than an installed copy
        import authbridge  # noqa: PLC0415

        found["authbridge"] = getattr(authbridge, "__version__", found["authbridge"])
    except ImportError:
        pass
    found["git_commit"] = _git_commit()
    found["python"] = platform.python_version()
    found["openssl"] = _openssl_version()
    found["wrk"] = _wrk_version()
    return found


def _git_commit() -> str | None:
    """HEAD of the checkout being measured, with ``+dirty`` if src/ has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _openssl_version() -> str | None:
    try:
        from cryptography.hazmat.backends.openssl.backend import backend  # noqa: PLC0415

        return str(backend.openssl_version_text())
    except Exception:
        return None


def _wrk_version() -> str | None:
    try:
        proc = subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True, check=False, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0].strip() if text else None


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
    }
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_mib() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def python_env() -> dict[str, str]:
    """Environment for child Python processes: the same authbridge and bench as this one."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT)]
    spec = importlib.util.find_spec("authbridge")
    if spec is not None and spec.origin:
        parts.insert(0, str(Path(spec.origin).resolve().parent.parent))
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


PYTHON = sys.executable
