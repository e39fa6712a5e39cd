"""What a lab test checks is gone after teardown: processes started from the lab's folder, and
the folder itself (namespaces and interfaces are checked by each test, which knows their names)."""

from __future__ import annotations

from pathlib import Path


def processes_and_folder_left(lab_folder: Path) -> list[str]:
    """Live processes whose command line names ``lab_folder``, and the folder if it remains."""
    left = []
    marker = str(lab_folder).encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                left.append(f"process {proc.name}: {cmdline!r}")
    if lab_folder.exists():
        left.append(f"folder {lab_folder}")
    return left
