import os

import numpy as np
import pytest

from deepks_es.constants import ANGSTROM_BOHR
from deepks_es.errors import StructureError
from deepks_es.structure import Structure, read_structure, read_structures, write_structures

from conftest import STRUCTURES


def test_dimer_read_in_bohr(dimer):
    assert dimer.symbols == ("O", "H", "H", "O", "H", "H")
    assert not dimer.is_periodic
    np.testing.assert_allclose(dimer.positions[0], np.array([-1.551007, -0.114520, 0.0]) * ANGSTROM_BOHR)


def test_box_cell_rows_in_bohr(box):
    assert box.is_periodic
    np.testing.assert_allclose(box.cell, np.eye(3) * 4.5 * ANGSTROM_BOHR)


def test_write_read_roundtrip(tmp_path, box, dimer):
    path = tmp_path / "frames.xyz"
    write_structures(path, [box, dimer])
    frames = read_structures(path)
    assert len(frames) == 2
    np.testing.assert_allclose(frames[0].positions, box.positions, atol=1e-10)
    np.testing.assert_allclose(frames[0].cell, box.cell, atol=1e-10)
    assert frames[1].cell is None
    assert [p.name for p in tmp_path.iterdir()] == ["frames.xyz"]  # no temp file left behind


@pytest.mark.parametrize("text, message", [
    ("2\n\nO 0 0 0\nXq 0 0 1\n", "Xq"),
    ("3\n\nO 0 0 0\nH 0 0\n", "cannot read"),
    ("x\n", "cannot read"),
    ("2\n\nO 0 0 0\nH nan 0 1\n", "NaN"),
])
def test_bad_files_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    with pytest.raises(StructureError, match=message) as info:
        read_structure(path)
    assert "\n" not in str(info.value)


def test_missing_file():
    with pytest.raises(StructureError, match="not found"):
        read_structure(STRUCTURES / "no_such_file.xyz")


def test_singular_cell_rejected():
    with pytest.raises(StructureError, match="singular"):
        Structure(("O",), np.zeros((1, 3)), np.zeros((3, 3)))


def test_positions_immutable(dimer):
    with pytest.raises(ValueError):
        dimer.positions[0, 0] = 1.0


def test_written_files_have_ordinary_permissions(tmp_path, dimer):
    path = tmp_path / "out.xyz"
    write_structures(path, [dimer])
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_repeated_box_is_the_supercell_copy_by_copy(box, dimer):
    """``repeated``: copy 0 is the box itself, copy (i, j, k) in C order is shifted by i a + j b + k c, the cell
    scales row by row; a cluster or a bad repetition is refused in one line."""
    supercell = box.repeated((2, 1, 3))
    n = box.natoms
    assert supercell.natoms == 6 * n and supercell.symbols == box.symbols * 6
    np.testing.assert_allclose(supercell.cell, box.cell * np.array([[2], [1], [3]]))
    np.testing.assert_allclose(supercell.positions[:n], box.positions)
    copy_1_0_2 = (1 * 1 + 0) * 3 + 2  # (i, j, k) -> (i * 1 + j) * 3 + k
    np.testing.assert_allclose(supercell.positions[copy_1_0_2 * n:(copy_1_0_2 + 1) * n],
                               box.positions + box.cell[0] + 2 * box.cell[2])
    with pytest.raises(StructureError, match="only a periodic structure"):
        dimer.repeated((2, 2, 2))
    with pytest.raises(StructureError, match="three positive integers"):
        box.repeated((2, 0, 1))


@pytest.mark.parametrize("unit, scale", [("atomic_unit", 1.0), ("angstrom", 1 / ANGSTROM_BOHR)])
def test_ipi_positions_trajectory_reads_as_the_box_in_its_units(tmp_path, box, unit, scale):
    """An XYZ file as i-PI writes it (cell and units on the comment line: a plain XYZ reader takes it for a
    cluster in Angstrom) reads as the periodic box, positions in Bohr whatever its units; frames by index."""
    a, b, c = np.linalg.norm(box.cell, axis=1)
    lines = []
    for step in range(2):
        lines += [f"{box.natoms}", f"# CELL(abcABC): {a:.8f} {b:.8f} {c:.8f} 90.00000 90.00000 90.00000  "
                                   f"Step: {step}  Bead: 0 positions{{{unit}}} cell{{atomic_unit}}"]
        lines += [f"{s} {x * scale:.8e} {y * scale:.8e} {z * scale + step:.8e}"
                  for s, (x, y, z) in zip(box.symbols, box.positions)]
    (tmp_path / "simulation.pos_0.xyz").write_text("\n".join(lines) + "\n")
    frames = read_structures(tmp_path / "simulation.pos_0.xyz")
    assert len(frames) == 2 and all(f.is_periodic for f in frames)
    np.testing.assert_allclose(frames[0].cell, np.diag([a, b, c]), atol=1e-6)
    np.testing.assert_allclose(frames[0].positions, box.positions, atol=1e-6)
    last = read_structure(tmp_path / "simulation.pos_0.xyz")
    np.testing.assert_allclose(last.positions[:, 2], box.positions[:, 2] + 1 / scale, atol=1e-6)
