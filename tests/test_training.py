"""The training pipeline: sample -> label -> train -> evaluate on 1-2 waters, resume, bad input."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import CLI, REPO, STRUCTURES
from deepks_es.errors import DeePKSError, SettingsError
from deepks_es.ipi.launcher import find_tool
from deepks_es.model import CorrectionModel
from deepks_es.training.config import TrainConfig, read_toml
from deepks_es.training.dataset import read_dataset
from deepks_es.training.sample import FlexibleSPC, SamplingPlan, random_water_box, sample


def cli(*args, cwd, timeout=600):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_weight_average_follows_its_recursion_and_restores_the_weights():
    import torch

    from deepks_es.training.averaging import WeightAverage

    layer = torch.nn.Linear(2, 1)
    average = WeightAverage(layer, decay=0.5)
    expected = layer.weight.detach().clone()
    for n in range(1, 6):
        with torch.no_grad():
            layer.weight.add_(1.0)
        kept = min(0.5, (1 + n) / (10 + n))
        expected = kept * expected + (1 - kept) * layer.weight.detach()
        average.update(layer)
    own = layer.weight.detach().clone()
    with pytest.raises(RuntimeError), average.applied(layer):
        torch.testing.assert_close(layer.weight.detach(), expected)
        raise RuntimeError  # the model's own weights come back even so
    assert torch.equal(layer.weight, own)
    torch.testing.assert_close(average.averaged_state(layer)["weight"], expected)
    assert torch.equal(average.averaged_state(layer)["bias"], layer.bias.detach())  # a constant stays


def test_a_checkpoint_resumes_only_its_own_training_younger_settings_at_their_defaults_included(tmp_path):
    """load_checkpoint: the training that wrote a checkpoint resumes it; another fingerprint is a one-line error
    naming what changed; a setting younger than the checkpoint (``later_settings``, at any depth) counts as
    unchanged at its default and as changed at any other value."""
    import torch

    from deepks_es.training.checkpoint import load_checkpoint

    written = {"config": {"epochs": 2, "network": {"hidden": "8x0e"}}, "member": 0}
    torch.save({"epoch": 1, "fingerprint": json.dumps(written)}, tmp_path / "checkpoint.pt")
    younger = {"refit": False, "width": None}
    now = {"config": {"epochs": 2, "refit": False, "network": {"hidden": "8x0e", "width": None}}, "member": 0}
    assert load_checkpoint(tmp_path / "checkpoint.pt", now, younger)["epoch"] == 1
    assert load_checkpoint(tmp_path / "checkpoint.pt", written)["epoch"] == 1
    assert load_checkpoint(tmp_path / "absent.pt", written) is None
    with pytest.raises(DeePKSError, match=r"another training \(changed: config\)"):
        load_checkpoint(tmp_path / "checkpoint.pt", now)
    with pytest.raises(DeePKSError, match=r"changed: config"):
        load_checkpoint(tmp_path / "checkpoint.pt", {**now, "config": {**now["config"], "refit": True}}, younger)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DeePKSError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path / "broken.pt", written)


def test_every_training_config_in_the_repository_reads():
    """The TOMLs under inputs/training/ (the shipped models' trainings and the candidates README cites) parse into
    their settings: a renamed or mistyped key in one of them is caught here, not hours into a run."""
    from deepks_es.training.train import read_train_config

    configs = sorted((REPO / "inputs" / "training").glob("*.toml"))
    kinds = {type(read_train_config(path)).__name__ for path in configs}
    assert len(configs) >= 15 and kinds == {"TrainConfig", "SurrogateTrainConfig"}


def test_flexible_water_sums_every_image_within_its_cutoff_and_its_forces_are_the_energy_gradient():
    """The sampler's q-SPC/Fw in a 4-water box (4.9-Angstrom edge, far below twice the 9-Angstrom cutoff): the
    box and its 2x2x2 supercell have the same energy per cell and the same forces (a minimum-image force field
    cut at half the edge gives neither), and the forces are minus the energy's finite-difference gradient."""
    from deepks_es.constants import ANGSTROM_BOHR
    from deepks_es.structure import Structure

    def water(xyz, cell):  # Angstrom
        return Structure(("O", "H", "H") * (len(xyz) // 3), xyz * ANGSTROM_BOHR, cell * ANGSTROM_BOHR)

    def spc(xyz, cell):  # eV and eV/Angstrom
        return FlexibleSPC.energy_forces(water(xyz, cell), 9.0)

    positions, length = random_water_box(4, np.random.default_rng(0))
    cell = np.eye(3) * length
    energy, forces = spc(positions, cell)
    big_energy, big_forces = FlexibleSPC.energy_forces(water(positions, cell).repeated((2, 2, 2)), 9.0)
    assert big_energy / 8 == pytest.approx(energy, abs=1e-9)
    np.testing.assert_allclose(big_forces.reshape(8, -1, 3), np.broadcast_to(forces, (8, *forces.shape)), atol=1e-9)
    for atom, axis in ((0, 0), (4, 2), (11, 1)):
        shifted = [positions.copy(), positions.copy()]
        shifted[0][atom, axis] += 1e-5
        shifted[1][atom, axis] -= 1e-5
        fd = -(spc(shifted[0], cell)[0] - spc(shifted[1], cell)[0]) / 2e-5
        assert forces[atom, axis] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_first_shell_counts_every_periodic_image(tmp_path):
    """examples/first_shell.py: one water in a 3.0-Angstrom cube has its O's six images at 3.0 Angstrom (a
    minimum-image count finds none), and so has every O of the 2x2x2 supercell; non-water frames are refused."""
    from deepks_es.constants import ANGSTROM_BOHR
    from deepks_es.structure import Structure, write_structures

    water = np.array([[0.0, 0.0, 0.0], [0.76, 0.59, 0.0], [-0.76, 0.59, 0.0]]) * ANGSTROM_BOHR
    edge = 3.0 * ANGSTROM_BOHR
    cube = Structure(("O", "H", "H"), water, np.eye(3) * edge)
    write_structures(tmp_path / "cubic.xyz", [cube, cube.repeated((2, 2, 2))])
    run = subprocess.run([sys.executable, str(REPO / "examples" / "first_shell.py"), "cubic.xyz"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "O within 3.3 Å 6.00 ± 0.00, mean distance to the 4 nearest O 3.000 ± 0.000 Å" in run.stdout
    write_structures(tmp_path / "flipped.xyz", [Structure(("H", "O", "H"), water, np.eye(3) * edge)])
    run = subprocess.run([sys.executable, str(REPO / "examples" / "first_shell.py"), "flipped.xyz"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "consecutive O, H, H" in run.stderr and "Traceback" not in run.stderr


def test_first_shell_sets_each_frames_distance_beside_its_evaluated_gap_error(tmp_path):
    """examples/first_shell.py --evaluations: one water in cubes of 3.0, 3.2 and 3.4 Angstrom (its O's nearest
    images at the edge) with model gap errors 0.0, 0.1 and 0.2 eV lie on the line 0.5 eV/Angstrom x (d - 3.0);
    a frame without a row (unconverged) is left out, and rows of frames the file does not have are refused."""
    from deepks_es.constants import ANGSTROM_BOHR
    from deepks_es.structure import Structure, write_structures

    water = np.array([[0.0, 0.0, 0.0], [0.76, 0.59, 0.0], [-0.76, 0.59, 0.0]]) * ANGSTROM_BOHR
    write_structures(tmp_path / "cubes.xyz", [Structure(("O", "H", "H"), water, np.eye(3) * edge * ANGSTROM_BOHR)
                                              for edge in (3.0, 3.2, 3.4)])
    rows = {f"{i:06d}": {"errors": {"model": {"gap": 0.1 * i}}} for i in range(3)}
    (tmp_path / "eval.json").write_text(json.dumps({"per_frame": rows}))
    command = [sys.executable, str(REPO / "examples" / "first_shell.py"), "cubes.xyz", "--evaluations", "eval.json"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "000001: 3.200 Å, model gap error +0.100 eV" in run.stdout
    assert ("3 frames: Spearman(distance, gap error) 1.00; gap error = 0.50 eV/Å × (distance − 3.000 Å), "
            "scatter 0.000 eV") in run.stdout
    rows["000002"] = {"converged": False}
    (tmp_path / "eval.json").write_text(json.dumps({"per_frame": rows}))
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "000002: 3.400 Å, no model gap error" in run.stdout and "Spearman" not in run.stdout
    rows["000003"] = rows.pop("000002")
    (tmp_path / "eval.json").write_text(json.dumps({"per_frame": rows}))
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no per-frame rows of the 3 frames of cubes.xyz" in run.stderr
    assert "Traceback" not in run.stderr


def test_sample_is_seeded_and_whole():
    plan = SamplingPlan(cluster_sizes=(2, 4), clusters=6, boxes=1, md_molecules=16, equilibration=100, stride=20,
                        seed=3)
    frames = sample(plan)
    again = sample(plan)
    assert [f.natoms for f in frames] == [f.natoms for f in again]
    np.testing.assert_array_equal(frames[0].positions, again[0].positions)
    for frame in frames[:6]:
        assert frame.cell is None and 2 <= frame.natoms // 3 <= 4
        molecules = frame.positions.reshape(-1, 3, 3)
        oh = np.linalg.norm(molecules[:, 1:] - molecules[:, :1], axis=-1) * 0.529177
        assert np.all((oh > 0.75) & (oh < 1.3))  # molecules are whole, not split across the box
    assert frames[-1].cell is not None and frames[-1].natoms == 6
    with pytest.raises(SettingsError):
        SamplingPlan(cluster_sizes=(4, 2))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """sample (1-2 waters) -> label -> train (two phases) -> evaluate, all through the CLI."""
    work = tmp_path_factory.mktemp("pipeline")
    run = cli("sample", "-o", "configs.xyz", "--sizes", "1-2", "--clusters", "3", "--md-molecules", "8",
              "--seed", "4", cwd=work)
    assert run.returncode == 0, run.stderr
    mpiexec = find_tool("mpiexec")  # two ranks share the frames when MPI is installed
    launcher = [mpiexec, "-n", "2"] if mpiexec else []
    run = subprocess.run([*launcher, *CLI, "label", "configs.xyz", "-o", "data.h5", "--quiet"], cwd=work,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    (work / "train.toml").write_text(
        'train = "data.h5"\nworkdir = "train"\nvalidation_fraction = 0.34\nhidden = [16, 16]\niterations = 2\n'
        'epochs = 200\nrefine_epochs = 20\nbatch_frames = 2\ncheckpoint_every = 20\n'
        '[weights]\nenergy = 10.0\nforces = 4.0\nhamiltonian = 0.2\neigenvalues = 1.0\nfrontier = 1.0\n'
        'density = 10.0\n')
    run = cli("train", "train.toml", cwd=work)
    assert run.returncode == 0, run.stderr
    return work


def test_label_writes_every_frame(pipeline):
    frames, attrs = read_dataset(pipeline / "data.h5")
    assert attrs["target_xc"] == "HSE06" and attrs["base_xc"] == "PBE"
    assert len(frames) == 3
    for frame in frames:
        for part in (frame.target, frame.base):
            assert part["converged"] and part["forces"].shape == (frame.structure.natoms, 3)
            nao = part["overlap"].shape[0]
            assert part["fock"].shape == part["dm"].shape == (nao, nao)
            assert part["mo_coeff"].shape == (nao, int(part["nocc"]) + 4)
        gap = lambda r: r["mo_energy"][int(r["nocc"])] - r["mo_energy"][int(r["nocc"]) - 1]  # noqa: E731
        assert gap(frame.target) > gap(frame.base) + 0.03  # HSE06 opens the PBE gap by > 1 eV


def test_label_resumes_without_recomputing(pipeline):
    parts = pipeline / "data.h5.parts"
    stamps = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.npz")}
    (pipeline / "data.h5").unlink()
    run = cli("label", "configs.xyz", "-o", "data.h5", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 0, run.stderr
    assert {p.name: p.stat().st_mtime_ns for p in parts.glob("*.npz")} == stamps
    assert len(read_dataset(pipeline / "data.h5")[0]) == 3


def test_label_gathers_the_finished_frames_only(pipeline):
    """--finished-only writes the frames labelled so far (a campaign under way) and labels nothing more."""
    parts = pipeline / "partial.h5.parts"
    shutil.copytree(pipeline / "data.h5.parts", parts, ignore=shutil.ignore_patterns("run.lock"))
    (parts / "000001.npz").unlink()
    run = cli("label", "configs.xyz", "-o", "partial.h5", "--finished-only", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "holds the 2 of 3 frames" in run.stderr
    frames, attrs = read_dataset(pipeline / "partial.h5")
    assert [f.name for f in frames] == ["000000", "000002"] and attrs["configurations"] == 3
    assert not (parts / "000001.npz").exists()
    shutil.rmtree(parts)
    (pipeline / "partial.h5").unlink()
    run = cli("label", "configs.xyz", "-o", "partial.h5", "--finished-only", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 1 and "no finished frames" in run.stderr and "Traceback" not in run.stderr


def test_label_parts_are_compact_and_a_plain_or_broken_part_is_handled(pipeline):
    """A part keeps each symmetric matrix as its upper triangle and the base's overlap as a reference to the
    target's, read back as the full arrays; a part written plainly (before the compact form) is rewritten compactly
    by the next run, the dataset unchanged; an unreadable part is a one-line error."""
    from deepks_es.training.parts import load_part, pack, unpack

    parts = pipeline / "compact.h5.parts"
    shutil.copytree(pipeline / "data.h5.parts", parts, ignore=shutil.ignore_patterns("run.lock"))
    with np.load(parts / "000000.npz") as data:
        assert {"target/fock@upper", "target/dm@upper", "base/overlap@same"} <= set(data.files)
        assert "target/fock" not in data.files and "target/mo_coeff" in data.files
    plain = load_part(parts / "000000.npz")
    rng = np.random.default_rng(0)
    for key in ("target/fock", "base/dm", "base/overlap"):  # round-off asymmetry, as PySCF's matrices have
        plain[key] = plain[key] * (1 + 1e-16 * rng.standard_normal(plain[key].shape))
    np.savez_compressed(parts / "000000.npz", **plain)
    run = cli("label", "configs.xyz", "-o", "compact.h5", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 0, run.stderr
    with np.load(parts / "000000.npz") as data:
        assert {"target/fock@upper", "base/dm@upper", "base/overlap@upper"} <= set(data.files)
    again = read_dataset(pipeline / "compact.h5")[0][0]
    for record, name in ((again.target, "target"), (again.base, "base")):
        assert set(record) == {key.split("/", 1)[1] for key in plain if key.startswith(name + "/")}
        for key, value in record.items():
            np.testing.assert_allclose(value, plain[f"{name}/{key}"], rtol=0, atol=1e-14)
    lopsided = {"m/fock": np.array([[1.0, 2.0], [2.5, 1.0]]), "n/fock": np.eye(3), "n/overlap": np.eye(3),
                "n/nocc": np.eye(3, dtype=int)}
    assert list(pack(lopsided)) == ["m/fock", "n/fock@upper", "n/overlap@same", "n/nocc"]  # asymmetric: whole
    for key, value in unpack(pack(lopsided)).items():
        np.testing.assert_array_equal(value, lopsided[key])
        assert value.dtype == lopsided[key].dtype
    (parts / "000001.npz").write_bytes(b"not a zip")
    run = cli("label", "configs.xyz", "-o", "compact.h5", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 1 and "unreadable label part" in run.stderr and "Traceback" not in run.stderr
    shutil.rmtree(parts)


def test_label_levels_spread_gives_the_gap_correction_and_the_frontier_orbitals_spread(pipeline):
    """examples/label_levels.py --spread: per frame the target - base gap and the participation numbers (waters)
    of the target's HOMO and LUMO; a monomer's are one water."""
    from deepks_es.training.records import record_levels_ev

    frames, _ = read_dataset(pipeline / "data.h5")
    run = subprocess.run([sys.executable, str(REPO / "examples" / "label_levels.py"), "data.h5", "--spread"],
                         cwd=pipeline, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for frame in frames:
        correction = record_levels_ev(frame.target)["gap"] - record_levels_ev(frame.base)["gap"]
        line = next(row for row in run.stdout.splitlines() if row.strip().startswith(frame.name))
        assert f"target - base gap {correction:+.3f} eV" in line
        homo, lumo = map(float, re.search(r"HOMO on ([0-9.]+) waters, LUMO on ([0-9.]+)", line).groups())
        waters = frame.structure.natoms // 3
        assert 1.0 <= homo <= waters + 1e-6 and 1.0 <= lumo <= waters + 1e-6
        if waters == 1:
            assert homo == lumo == 1.0


def test_label_refuses_an_output_another_live_run_writes(pipeline):
    """A second label run on one output stops with one line while the first lives; a dead run's lock is taken."""
    lock = pipeline / "data.h5.parts" / "run.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    run = cli("label", "configs.xyz", "-o", "data.h5", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 1 and "another deepks-es label run" in run.stderr and "Traceback" not in run.stderr
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
    run = cli("label", "configs.xyz", "-o", "data.h5", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 0, run.stderr
    assert not lock.exists()


def test_label_refuses_parts_of_other_configurations_or_settings(pipeline):
    """Resuming names what differs, e.g. the multigrid cutoff of frames labelled before the default changed."""
    other = pipeline / "other.xyz"
    other.write_text((pipeline / "configs.xyz").read_text().replace("O ", "O  ", 1))
    run = cli("label", "other.xyz", "-o", "data.h5", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 1 and "other configurations" in run.stderr
    run = cli("label", "configs.xyz", "-o", "data.h5", "--ke-cutoff", "100", "--quiet", cwd=pipeline, timeout=60)
    assert run.returncode == 1 and "periodic_ke_cutoff 500.0 (here 100.0)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_train_outputs_and_resume(pipeline):
    work = pipeline / "train"
    for name in ("model.pt", "loss.png", "loss.csv", "checkpoint.pt", "phase0/model.pt", "phase1/model.pt"):
        assert (work / name).is_file(), name
    assert len(list((work / "phase1" / "scf").glob("*.npz"))) == 3
    history = json.loads((work / "loss.json").read_text())
    assert [row["phase"] for row in history] == [0] * 200 + [1] * 20
    first, last = history[0], history[199]
    assert last["train_eigenvalues"] < first["train_eigenvalues"]
    model = CorrectionModel.load(work / "model.pt")
    assert model.provenance["baselines"]["shift_ev"]["gap"] > 1.0
    assert len(model.provenance["validation_frames"]) == 1
    run = cli("train", "train.toml", cwd=pipeline, timeout=120)  # everything done: resumes, trains nothing
    assert run.returncode == 0 and "resuming" in run.stderr and "(train/validation)" not in run.stderr
    again = CorrectionModel.load(work / "model.pt").state_dict()
    assert all(np.array_equal(again[k], v) for k, v in model.state_dict().items())


def test_train_seed_trains_the_recipe_again_beside_it(pipeline):
    """train --seed N: the config's recipe with seed N (recorded in the model), in WORKDIR_seedN beside the seed-0
    training, from other initial weights."""
    (pipeline / "quick.toml").write_text('train = "data.h5"\nworkdir = "quick"\nvalidation_fraction = 0.34\n'
                                         'hidden = [8]\niterations = 1\nepochs = 3\n')
    models = {}
    for seed, extra in ((0, []), (5, ["--seed", "5"])):
        run = cli("train", "quick.toml", *extra, cwd=pipeline, timeout=300)
        assert run.returncode == 0, run.stderr
        models[seed] = CorrectionModel.load(pipeline / ("quick" if seed == 0 else "quick_seed5") / "model.pt")
        assert models[seed].provenance["seed"] == seed
    first, other = (m.state_dict() for m in models.values())
    assert any(not np.array_equal(first[k], other[k]) for k in first if first[k].dtype.is_floating_point)
    run = cli("ensemble", "quick/model.pt", "quick_seed5/model.pt", "-o", "quick_mean.pt", cwd=pipeline)
    assert run.returncode == 0, run.stderr  # the seeds' mean; its split is no member's, so --subset is refused
    run = cli("evaluate", "quick_mean.pt", "data.h5", "--subset", "validation", "--quiet", cwd=pipeline)
    assert run.returncode == 1 and "records no validation split" in run.stderr and "Traceback" not in run.stderr


def test_seed_spread_compares_recipes_over_seeds_per_test_set(tmp_path):
    """examples/seed_spread.py: each recipe's mean ± sample sd (range) over its seeds, one table per test set; an
    evaluation with unconverged frames is refused."""
    def evaluation(name, data, gap_mae, forces=None, converged=8):
        metrics = {"gap": {"mae": gap_mae, "mean": -gap_mae, "n": 8}}
        if forces is not None:
            metrics["forces"] = {"rmse": forces, "n": 300}
        (tmp_path / name).write_text(json.dumps({"data": data, "frames": 8, "scf_converged": converged,
                                                 "metrics": {"model": metrics}}))
        return str(tmp_path / name)

    a = [evaluation("a0.json", "valid.h5", 0.010, 40.0), evaluation("a1.json", "valid.h5", 0.030, 46.0),
         evaluation("a0_box.json", ["box8.h5", "box16.h5"], 0.05)]
    b = [evaluation("b0.json", "valid.h5", 0.020, 41.0)]
    script = [sys.executable, str(REPO / "examples" / "seed_spread.py")]
    run = subprocess.run([*script, "--recipe", "A", *a, "--recipe", "B", *b], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    clusters, boxes = run.stdout.split("box16.h5, box8.h5:")
    assert "valid.h5:" in clusters and "| A (n = 2) | B (n = 1) |" in clusters
    assert "| gap MAE | eV | 0.020 ± 0.014 (0.010 … 0.030) | 0.020 |" in clusters
    assert "| forces RMSE | meV/Å | 43.0 ± 4.2 (40.0 … 46.0) | 41.0 |" in clusters
    assert "| A (n = 1) |" in boxes and "| gap MAE | eV | 0.050 |" in boxes and "forces" not in boxes
    bad = evaluation("bad.json", "valid.h5", 0.01, converged=7)
    run = subprocess.run([*script, "--recipe", "A", bad], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "did not converge on 1 frame(s)" in run.stderr and "Traceback" not in run.stderr


def test_evaluate_table(pipeline):
    run = cli("evaluate", "train/model.pt", "data.h5", "-o", "eval", "--quiet", cwd=pipeline)
    summary = json.loads((pipeline / "eval.json").read_text())
    # a model trained on two tiny frames may fail to converge elsewhere: flagged (exit 3), never hidden
    assert summary["scf_attempted"] == 3 and summary["scf_converged"] >= 1, run.stderr
    assert run.returncode == (0 if summary["scf_converged"] == 3 else 3), run.stderr
    metrics = summary["metrics"]
    for method in ("model", "base", "scissor"):
        assert {"energy", "forces", "gap", "homo", "lumo", "occupied"} <= set(metrics[method])
    assert metrics["base"]["gap"]["mae"] > 1.0  # PBE underestimates the HSE06 gap
    assert metrics["model"]["gap"]["mae"] < metrics["base"]["gap"]["mae"]
    assert "| gap | eV |" in (pipeline / "eval.md").read_text()
    rows = [row for row in summary["per_frame"].values() if row["converged"]]
    assert len(summary["per_frame"]) == 3 and len(rows) == summary["scf_converged"]
    for method in ("model", "base", "scissor"):
        gaps = [row["errors"][method]["gap"] for row in rows]
        assert np.mean(np.abs(gaps)) == pytest.approx(metrics[method]["gap"]["mae"], rel=1e-9)
    assert all(row["target_gap"] > 5.0 and row["waters"] in (1, 2) for row in rows)
    for method in ("model", "base"):  # forces per element and per frame add up to the forces over all atoms
        forces, by_element = metrics[method]["forces"], [metrics[method][f"forces:{e}"] for e in ("H", "O")]
        assert by_element[0]["n"] == 2 * by_element[1]["n"] and sum(part["n"] for part in by_element) == forces["n"]
        squares = forces["n"] * forces["rmse"] ** 2
        assert sum(part["n"] * part["rmse"] ** 2 for part in by_element) == pytest.approx(squares)
        assert max(part["max"] for part in by_element) == max(row["errors"][method]["forces_max"] for row in rows)
        per_frame = [(row["waters"] * 9, row["errors"][method]["forces_rmse"]) for row in rows]
        assert sum(n * rmse**2 for n, rmse in per_frame) == pytest.approx(squares)
    assert "| forces on H | meV/Å |" in (pipeline / "eval.md").read_text()
    levels = subprocess.run([sys.executable, str(REPO / "examples" / "label_levels.py"), "data.h5", "--evaluations",
                             "eval.json"], cwd=pipeline, capture_output=True, text=True, timeout=120)
    assert levels.returncode == 0, levels.stderr  # the model's HOMO error of each converged row, as evaluate gave it
    for name, row in summary["per_frame"].items():
        expected = f"model HOMO error {row['errors']['model']['homo']:+.3f} eV" if row["converged"] else "no model HOMO"
        assert expected in next(line for line in levels.stdout.splitlines() if line.startswith(f"  {name}:"))
    run = cli("evaluate", "train/model.pt", "data.h5", "--subset", "validation", "--json", "--quiet", cwd=pipeline)
    assert run.returncode in (0, 3) and json.loads(run.stdout)["frames"] == 1


def test_evaluate_pools_several_files_into_one_test_set(pipeline, tmp_path):
    """evaluate MODEL A.h5 B.h5: one table over the frames of both, named by file stem; files of one name refused."""
    shutil.copy(pipeline / "data.h5", tmp_path / "copy.h5")
    single = json.loads(cli("evaluate", "train/model.pt", "data.h5", "--json", "--quiet", cwd=pipeline).stdout)
    run = cli("evaluate", "train/model.pt", "data.h5", tmp_path / "copy.h5", "--json", "--quiet", cwd=pipeline)
    pooled = json.loads(run.stdout)
    assert pooled["frames"] == 2 * single["frames"] and pooled["data"] == ["data.h5", str(tmp_path / "copy.h5")]
    assert set(pooled["per_frame"]) == {f"{stem}/{name}" for stem in ("data", "copy") for name in single["per_frame"]}
    for method, quantities in single["metrics"].items():  # every frame twice: the same statistics, twice the count
        for key, stats in quantities.items():
            assert pooled["metrics"][method][key]["mae"] == pytest.approx(stats["mae"], rel=1e-9)
            assert pooled["metrics"][method][key]["n"] == 2 * stats["n"]
    (tmp_path / "again").mkdir()
    shutil.copy(pipeline / "data.h5", tmp_path / "again" / "data.h5")
    run = cli("evaluate", "train/model.pt", "data.h5", tmp_path / "again" / "data.h5", "--quiet", cwd=pipeline)
    assert run.returncode == 1 and "same file name" in run.stderr and "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def labelled_box(tmp_path_factory):
    """The 2-water box labelled (HSE06 and PBE) at a 60-Ha multigrid cutoff: box.h5 in the returned folder."""
    work = tmp_path_factory.mktemp("box")
    run = cli("label", STRUCTURES / "water_box_2.xyz", "-o", "box.h5", "--ke-cutoff", "60", "--quiet", cwd=work)
    assert run.returncode == 0, run.stderr
    return work


@pytest.mark.slow
def test_evaluate_runs_the_model_at_another_periodic_cutoff(labelled_box):
    """evaluate --ke-cutoff: the model's SCF on a periodic frame at that multigrid cutoff, against HSE06 labels made at
    another (Gaussian density fitting, the HSE06 route, does not use the mesh: README, "The periodic cutoff")."""
    from deepks_es.constants import HARTREE_EV
    from deepks_es.engines import make_engine
    from deepks_es.structure import read_structure
    from deepks_es.training.records import record_levels_ev

    run = cli("evaluate", "default", "box.h5", "--ke-cutoff", "120", "--json", "--quiet", cwd=labelled_box)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["model_ke_cutoff"] == 120.0
    hse06_gap = record_levels_ev(read_dataset(labelled_box / "box.h5")[0][0].target)["gap"]
    box = read_structure(STRUCTURES / "water_box_2.xyz")
    gaps = {cutoff: make_engine("default", ke_cutoff=cutoff).compute(box).gap * HARTREE_EV - hse06_gap
            for cutoff in (60.0, 120.0)}
    assert abs(gaps[120.0] - gaps[60.0]) > 1e-3  # the cutoff matters for the model, so the check below can fail
    assert summary["metrics"]["model"]["gap"]["mae"] == pytest.approx(abs(gaps[120.0]), abs=1e-4)
    with h5py.File(labelled_box / "box.h5") as source, h5py.File(labelled_box / "at80.h5", "w") as copy:
        for key in source:  # the same frame, its settings saying 80 Ha: one test set is one kind of labels
            source.copy(source[key], copy, key)
        settings = json.loads(source.attrs["settings"])
        copy.attrs.update({**source.attrs, "settings": json.dumps({**settings, "periodic_ke_cutoff": 80.0})})
    run = cli("evaluate", "default", "box.h5", "at80.h5", "--ke-cutoff", "120", "--quiet", cwd=labelled_box)
    assert run.returncode == 1 and "other settings" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_train_runs_the_scf_phases_at_its_periodic_cutoff(labelled_box):
    """periodic_ke_cutoff in the training TOML: the SCF with the model after the first phase runs on periodic frames
    at that cutoff, not the labels'; the recorded base energy (PBE at the model's density) is that engine's."""
    from deepks_es.engines import make_engine
    from deepks_es.structure import read_structure

    (labelled_box / "train.toml").write_text('train = "box.h5"\nworkdir = "w"\nhidden = [8]\niterations = 2\n'
                                             'epochs = 3\nrefine_epochs = 1\nvalidation_fraction = 0\n'
                                             'periodic_ke_cutoff = 120\n')
    run = cli("train", "train.toml", cwd=labelled_box)
    assert run.returncode == 0, run.stderr
    (record,) = (labelled_box / "w" / "phase1" / "scf").glob("*.npz")
    with np.load(record) as data:
        assert bool(data["converged"])
        base_energy = float(data["energy"])
    box = read_structure(STRUCTURES / "water_box_2.xyz")
    label_dm = read_dataset(labelled_box / "box.h5")[0][0].base["dm"]  # where the training's SCF starts
    energies = {}
    for cutoff in (60.0, 120.0):
        engine = make_engine(str(labelled_box / "w" / "phase0" / "model.pt"), ke_cutoff=cutoff)
        result = engine.compute(box, dm0=label_dm)
        energies[cutoff] = result.energy - result.scalars["e_delta_hartree"]
    assert abs(energies[120.0] - energies[60.0]) > 1e-4  # the cutoff shows in the energy
    assert base_energy == pytest.approx(energies[120.0], abs=2e-6)
    assert CorrectionModel.load(labelled_box / "w" / "model.pt").provenance["periodic_ke_cutoff"] == 120.0


def test_train_on_several_datasets(pipeline, tmp_path):
    """``train = [a, b]``: frames of both files, named by file stem, in one split that evaluate --subset reads back;
    files labelled with other settings, or two files of one stem, are refused."""
    from deepks_es.training.dataset import read_datasets

    shutil.copy(pipeline / "data.h5", tmp_path / "clusters.h5")
    shutil.copy(pipeline / "data.h5", tmp_path / "more.h5")
    (tmp_path / "train.toml").write_text('train = ["clusters.h5", "more.h5"]\nworkdir = "w"\nhidden = [8]\n'
                                         'iterations = 1\nepochs = 2\nvalidation_fraction = 0.34\n')
    run = cli("train", "train.toml", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    model = CorrectionModel.load(tmp_path / "w" / "model.pt")
    held_out = model.provenance["validation_frames"]
    assert len(held_out) == 2 and all(name.split("/")[0] in ("clusters", "more") for name in held_out)
    assert len(model.provenance["train_data"]) == 2
    stem = held_out[0].split("/")[0]  # evaluate on a file with held-out frames: --subset finds exactly those
    run = cli("evaluate", "w/model.pt", f"{stem}.h5", "--subset", "validation", "--json", "--quiet", cwd=tmp_path)
    expected = sum(name.startswith(f"{stem}/") for name in held_out)
    assert run.returncode in (0, 3) and json.loads(run.stdout)["frames"] == expected, run.stderr
    with h5py.File(tmp_path / "more.h5", "r+") as h5:
        h5.attrs["settings"] = h5.attrs["settings"].replace('"HSE06"', '"PBE0"')
    with pytest.raises(DeePKSError, match="other settings"):
        read_datasets([tmp_path / "clusters.h5", tmp_path / "more.h5"])
    (tmp_path / "sub").mkdir()
    shutil.copy(pipeline / "data.h5", tmp_path / "sub" / "clusters.h5")
    with pytest.raises(DeePKSError, match="same file name"):
        read_datasets([tmp_path / "clusters.h5", tmp_path / "sub" / "clusters.h5"])
    (tmp_path / "list.toml").write_text('train = []\nworkdir = "w"\n')
    with pytest.raises(SettingsError, match="train must be a file or a list"):
        TrainConfig.from_toml(tmp_path / "list.toml")


def test_a_files_loss_factors_weight_its_frames(pipeline, tmp_path):
    """``train = [..., {path, weights}]``: the factors reach that file's frames only; frames at factor 0 leave the
    network as it was, the same frames at factor 1 move it; malformed entries are one-line errors."""
    import torch

    from deepks_es.training.frames import LOSS_TERMS, weighted_loss
    from deepks_es.training.train import Trainer

    for name in ("clusters.h5", "ignored.h5"):
        shutil.copy(pipeline / "data.h5", tmp_path / name)
    zeros = ", ".join(f"{term} = 0" for term in LOSS_TERMS)
    (tmp_path / "train.toml").write_text(
        f'train = ["clusters.h5", {{path = "ignored.h5", weights = {{{zeros}}}}}]\nworkdir = "w"\nhidden = [8]\n'
        'iterations = 1\nepochs = 1\nbatch_frames = 1\nvalidation_fraction = 0.0\n')
    config = TrainConfig.from_toml(tmp_path / "train.toml")
    assert config.train == (tmp_path / "clusters.h5", tmp_path / "ignored.h5")
    assert config.train_weights == {str(tmp_path / "ignored.h5"): dict.fromkeys(LOSS_TERMS, 0.0)}
    trainer = Trainer(config, log=lambda message: None)
    frames, _ = trainer._prepare(trainer._phase_records(0))
    ignored = [f for f in frames if f.name.startswith("ignored/")]
    kept = [f for f in frames if f.name.startswith("clusters/")]
    assert len(ignored) == len(kept) == 3 and all(not f.factors for f in kept)
    trainer._initialise(frames)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer._train(0, 0, 1, ignored, [], None)
    assert all(torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())
    trainer._train(0, 0, 1, kept, [], None)
    assert not all(torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())
    frame = kept[0]  # one term at factor 2 adds that term once more, weighted: no other term moves
    plain, losses = weighted_loss(trainer.model, frame, config.weights)
    frame.factors = {"eigenvalues": 2.0}
    doubled, _ = weighted_loss(trainer.model, frame, config.weights)
    eigenvalues = losses["eigenvalues"].item()
    assert (doubled - plain).item() == pytest.approx(config.weights["eigenvalues"] * eigenvalues, rel=1e-12)
    assert eigenvalues > 0
    (tmp_path / "ones.toml").write_text('train = ["a.h5", {path = "b.h5", weights = {energy = 1.0}}]\n'
                                        'workdir = "w"\n')
    assert TrainConfig.from_toml(tmp_path / "ones.toml").train_weights == {}  # a factor of 1 is the default
    for entry, message in (('{file = "a.h5"}', "a data entry is"), ('{path = "a.h5", weights = {spin = 1}}',
                                                                     "unknown loss term"),
                           ('{path = "a.h5", weights = {energy = -1}}', "data weights >= 0"),
                           ('{path = "a.h5", weights = {energy = "x"}}', "must be numbers")):
        (tmp_path / "bad.toml").write_text(f'train = [{entry}]\nworkdir = "w"\n')
        with pytest.raises(SettingsError, match=message):
            TrainConfig.from_toml(tmp_path / "bad.toml")


def test_bad_training_inputs(tmp_path):
    (tmp_path / "bad.toml").write_text('train = "x.h5"\nworkdir = "w"\nepochz = 3\n')
    with pytest.raises(SettingsError, match="unknown setting"):
        TrainConfig.from_toml(tmp_path / "bad.toml")
    (tmp_path / "weights.toml").write_text('train = "x.h5"\nworkdir = "w"\n[weights]\nenergy = 1\nspin = 2\n')
    with pytest.raises(SettingsError, match="unknown loss term"):
        TrainConfig.from_toml(tmp_path / "weights.toml")
    for bad, message in (("batch_frames = 0", "batch_frames >= 1"), ("hidden = 64", "hidden must be a list"),
                         ("learning_rate = -1.0", "learning rates > 0"), ('epochs = "many"', "wrong type"),
                         ("scf_max_cycle = 0", "scf_max_cycle >= 1"),
                         ("periodic_ke_cutoff = -5.0", "periodic_ke_cutoff > 0")):
        (tmp_path / "values.toml").write_text(f'train = "x.h5"\nworkdir = "w"\n{bad}\n')
        with pytest.raises(SettingsError, match=message):
            TrainConfig.from_toml(tmp_path / "values.toml")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DeePKSError, match="cannot read dataset"):
        read_dataset(tmp_path / "junk.h5")


def test_sample_from_a_run_takes_its_frames_and_cuts_clusters(tmp_path):
    """``--from-run``: liquid boxes are evenly spaced logged frames of an i-PI run from step ``skip`` on (its cell,
    undistorted with distortion 0), clusters whole molecules cut from them; a run of other molecules is refused."""
    from deepks_es.constants import ANGSTROM_BOHR

    (tmp_path / "input.xml").write_text("<simulation><output prefix='simulation'><trajectory filename='pos' "
                                        "stride='10' format='xyz'> positions{angstrom} </trajectory></output>"
                                        "</simulation>")
    positions, length = random_water_box(8, np.random.default_rng(1))
    cell_bohr = length * ANGSTROM_BOHR
    lines = []
    for step in range(0, 60, 10):  # the frame at step s is the box shifted by s/100 Angstrom
        lines += ["24", f"# CELL(abcABC): {cell_bohr:10.5f} {cell_bohr:10.5f} {cell_bohr:10.5f}  90.00000  90.00000  "
                  f"90.00000  Step: {step:11d}  Bead:       0 positions{{angstrom}}  cell{{atomic_unit}}"]
        lines += [f"{'OHH'[i % 3]:>8s} {x + step / 100:15.8e} {y:15.8e} {z:15.8e}" for i, (x, y, z) in
                  enumerate(positions)]
    (tmp_path / "simulation.pos_0.xyz").write_text("\n".join(lines) + "\n")
    plan = SamplingPlan(cluster_sizes=(2, 3), clusters=2, liquid_boxes=3, distortion=0.0, source=str(tmp_path),
                        skip=20, clusters_per_snapshot=2, seed=0)
    frames = sample(plan)
    boxes = frames[2:]
    for box, step in zip(boxes, (30, 40, 50)):  # steps 20-50: the clusters' frame (20), then the 3 boxes
        np.testing.assert_allclose(box.cell, np.eye(3) * cell_bohr, atol=1e-4)
        np.testing.assert_allclose(box.positions[0, 0], (positions[0, 0] + step / 100) * ANGSTROM_BOHR, atol=1e-6)
    assert all(f.cell is None and f.symbols == ("O", "H", "H") * (f.natoms // 3) for f in frames[:2])
    with pytest.raises(SettingsError, match="logged 2 frame.*3 wanted"):
        sample(SamplingPlan(clusters=0, liquid_boxes=3, source=str(tmp_path), skip=40))
    with pytest.raises(SettingsError, match="at most 4"):
        sample(SamplingPlan(cluster_sizes=(2, 6), clusters=1, source=str(tmp_path)))


@pytest.mark.parametrize("recipe", sorted((REPO / "inputs" / "training").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_training_recipe_is_a_valid_config(recipe):
    """Every TOML recipe in inputs/training reads as the trainer reads it, into its kind of config, and a
    surrogate recipe's network builds: an unknown key or a bad value is a SettingsError here, not after hours of
    labelling, and a renamed or removed setting cannot break a recipe unnoticed."""
    from deepks_es.surrogate.network import SurrogateModel
    from deepks_es.training.surrogate import SurrogateTrainConfig
    from deepks_es.training.train import read_train_config

    config = read_train_config(recipe)
    assert isinstance(config, SurrogateTrainConfig) == ("surrogate" in read_toml(recipe))
    if isinstance(config, SurrogateTrainConfig):
        assert sum(p.numel() for p in SurrogateModel(config.network).parameters()) > 0
    else:
        assert config.iterations >= 1


def test_a_surrogate_config_holds_only_its_table(tmp_path):
    from deepks_es.training.train import read_train_config

    (tmp_path / "mixed.toml").write_text('[surrogate]\ndata = ["a.h5"]\nworkdir = "w"\n[extra]\nx = 1\n')
    with pytest.raises(SettingsError, match="only the \\[surrogate\\] table"):
        read_train_config(tmp_path / "mixed.toml")
