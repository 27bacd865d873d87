"""Continuing a killed i-PI run: its newest checkpoint, and its outputs cut back to that checkpoint.

i-PI writes a checkpoint (an input file holding the full state, ``<step>`` included) every ``stride`` steps
and ``RESTART`` when it stops cleanly; started from one, it appends to its outputs. A run killed between
checkpoints has written steps that the continuation computes again, so before it starts, every output of
the run prefix keeps only the steps up to the checkpoint's (i-PI continues with the next one): the
properties rows (by their ``step`` column), and the frames of the trajectories (xyz) and extras (by the
``Step:`` of their headers).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import SettingsError
from ..fileio import RUN_INPUT, atomic_path
from .outputs import output_names

RESUME_INPUT = "resume.xml"
"""The checkpoint, rewritten for new sockets, that i-PI continues from."""

STEP_IN_HEADER = re.compile(r"Step:\s*(\d+)")
STEP_COLUMN = re.compile(r"#\s*column\s+(\d+)\s*-->\s*step\b")
PROPERTIES_HEADER = re.compile(r"^#\s*(column|cols\.)\s")


def latest_checkpoint(run_dir: Path, started: float) -> tuple[Path, int]:
    """The i-PI state file in ``run_dir`` written since ``started`` (epoch s; older ones belong to an earlier
    run in the same directory) with the largest ``<step>``, and that step."""
    found = []
    for path in sorted(run_dir.iterdir()):
        if not path.is_file() or path.name in (RUN_INPUT, RESUME_INPUT) or path.stat().st_size == 0:
            continue
        if path.stat().st_mtime < started:
            continue
        with open(path, "rb") as handle:
            start = handle.read(4096)
        if b"<simulation" not in start:
            continue
        try:
            step = ET.parse(path).getroot().findtext("step")
        except ET.ParseError:
            continue  # a checkpoint cut off by the kill
        if step is not None and step.strip().isdigit():
            found.append((int(step), path))
    if not found:
        raise SettingsError(f"{run_dir} holds no i-PI checkpoint (RESTART or <checkpoint> output): nothing to resume "
                            "from; add <checkpoint stride='N'/> to the <output> of the input")
    step, path = max(found)
    return path, step


def truncate_outputs(run_dir: Path, step: int) -> list[Path]:
    """Cut every output of the run (prefix from its input.xml) back to the steps up to ``step``; the files cut."""
    try:
        root = ET.parse(run_dir / RUN_INPUT).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SettingsError(f"cannot read {run_dir / RUN_INPUT} of the run ({exc}): cannot resume") from None
    prefix = output_names(root).prefix
    cut = []
    for path in sorted(run_dir.glob(f"{prefix}.*")):
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # a line cut off by the kill
        if not lines or path.name.endswith(".restart") or lines[0].lstrip().startswith(("<", "<!--")):
            continue  # empty, or a checkpoint
        kept = _before(lines, step, path)
        if len(kept) != len(lines):
            with atomic_path(path) as tmp, open(tmp, "w") as handle:
                handle.writelines(kept)
            cut.append(path)
    return cut


def _before(lines: list[str], step: int, path: Path) -> list[str]:
    """The lines of an i-PI output that belong to steps up to ``step``."""
    columns = [STEP_COLUMN.search(line) for line in lines if line.startswith("#")]
    columns = [int(match.group(1)) - 1 for match in columns if match]
    if any(PROPERTIES_HEADER.match(line) for line in lines[:50]):  # a properties file
        if not columns:
            raise SettingsError(f"{path} has no step column: add 'step' to <properties> to make the run resumable")
        try:
            return [line for line in lines if line.startswith("#") or not line.strip()
                    or int(float(line.split()[columns[0]])) <= step]
        except (IndexError, ValueError):
            raise SettingsError(f"{path} has a damaged row: cannot cut it back to step {step}") from None
    for index, line in enumerate(lines):  # extras and xyz trajectories: frames headed by "Step: N"
        match = STEP_IN_HEADER.search(line)
        if match and int(match.group(1)) > step:
            frame_start = index - 1 if index and lines[index - 1].strip().isdigit() else index  # xyz atom count
            return lines[:frame_start]
    if not any(STEP_IN_HEADER.search(line) for line in lines[:3]):
        raise SettingsError(f"{path}: an i-PI output whose steps cannot be told (only properties, xyz and extras "
                            "are cut back on resume)")
    return lines
