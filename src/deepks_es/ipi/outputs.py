"""Where an i-PI input sends its outputs: prefix, properties file and extras trajectories."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OutputNames:
    """File names of an i-PI run, relative to its directory.

    Attributes:
        prefix: the ``<output prefix>`` (i-PI's default: simulation).
        properties_filename: the ``filename`` of ``<properties>`` (default: out).
        extras: {extra_type: trajectory filename} for the ``extras`` trajectories.
        positions: the ``filename`` of a positions trajectory (None: not logged).
    """

    prefix: str = "simulation"
    properties_filename: str = "out"
    extras: dict[str, str] = field(default_factory=dict)
    positions: str | None = None

    @property
    def properties(self) -> str:
        """The properties file, ``prefix.filename``."""
        return f"{self.prefix}.{self.properties_filename}"


def output_names(root: ET.Element) -> OutputNames:
    """Read the ``<output>`` section of a parsed ``<simulation>``, with i-PI's defaults."""
    output = root.find("output")
    if output is None:
        return OutputNames()
    properties = output.find("properties")
    extras = {t.get("extra_type"): t.get("filename") for t in output.findall("trajectory")
              if (t.text or "").strip() == "extras" and t.get("extra_type")}
    positions = next((t.get("filename") for t in output.findall("trajectory")
                      if (t.text or "").strip().startswith("positions")), None)
    return OutputNames(output.get("prefix", "simulation"),
                       "out" if properties is None else properties.get("filename", "out"), extras, positions)
