import json

import numpy as np
import pytest
import torch

from deepks_es.constants import HARTREE_EV
from deepks_es.engines import make_engine, resolve_model, shipped_model_path
from deepks_es.engines import registry
from deepks_es.errors import ModelError, SettingsError
from deepks_es.model import CorrectionModel, ProjectorSpec
from deepks_es.model.descriptors import block_moments, density_factor, eigen_descriptors
from deepks_es.model.ensemble import mean_model

from conftest import pyscf_engine


def test_save_load_roundtrip(tmp_path, random_model):
    path = tmp_path / "model.pt"
    random_model.save(path)
    loaded = CorrectionModel.load(path)
    assert loaded.metadata == random_model.metadata
    x = torch.rand(5, random_model.spec.ndescriptor, dtype=torch.float64)
    idx = torch.tensor([0, 1, 1, 0, 1])
    torch.testing.assert_close(loaded(x, idx), random_model(x, idx))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_metadata_records_setup(random_model):
    meta = random_model.metadata
    assert meta["elements"] == ["H", "O"]
    assert (meta["base_xc"], meta["basis"], meta["pseudo"]) == ("PBE", "gth-dzvp", "gth-pbe")
    assert meta["projector"] == ProjectorSpec().to_dict()
    assert meta["provenance"]["kind"] == "random"
    assert meta["units"]["energy"] == "hartree"


def _blocks_with_crossing(spec: ProjectorSpec, t: torch.Tensor) -> torch.Tensor:
    """One atom's projected density: 0.1 on the diagonal, its first p block diag(0.3 + 2t, 0.3 - t, 0.2)."""
    p_block = torch.as_tensor(spec.block_indices()[1][0])
    diagonal = torch.full((spec.nproj,), 0.1, dtype=torch.float64)
    crossing = torch.stack([0.3 + 2 * t, 0.3 - t, torch.tensor(0.2, dtype=torch.float64)])
    diagonal = diagonal.index_put((p_block,), crossing)
    return torch.diag(diagonal)[None]


def test_density_factor_reproduces_the_density_matrix():
    from pyscf import lib

    rng = np.random.default_rng(3)
    orbitals = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    occupations = np.array([2.0] * 4 + [0.5] + [0.0] * 7)
    dm = (orbitals * occupations) @ orbitals.T

    def reproduced(dm_in):
        factor, signs = density_factor(dm_in)
        np.testing.assert_allclose((factor * signs) @ factor.T, dm, atol=1e-12)
        return factor.shape[1]

    assert reproduced(lib.tag_array(dm, mo_coeff=orbitals, mo_occ=occupations)) == 5  # from the orbitals
    assert reproduced(dm) == 5  # from the eigenvectors, the numerical null space dropped
    stale = lib.tag_array(dm, mo_coeff=orbitals[:, ::-1], mo_occ=occupations)
    assert reproduced(stale) == 5  # orbitals that do not give dm are not used
    indefinite = dm - 0.3 * np.outer(orbitals[:, 8], orbitals[:, 8])
    factor, signs = density_factor(indefinite)
    assert sorted(signs) == [-1] + [1] * 5
    np.testing.assert_allclose((factor * signs) @ factor.T, indefinite, atol=1e-12)


def test_moments_are_traces_of_centred_block_powers():
    spec = ProjectorSpec()
    a = torch.rand(2, spec.nproj, spec.nproj, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    proj_dm = a @ a.transpose(1, 2)
    moments = block_moments(eigen_descriptors(proj_dm, spec), spec)
    column = 0
    for idx in spec.block_indices():
        for shell in idx:
            block = proj_dm[:, shell[:, None], shell[None, :]]
            size = len(shell)
            mean = block.diagonal(dim1=1, dim2=2).mean(-1)
            torch.testing.assert_close(moments[:, column], mean)
            centred = block - mean[:, None, None] * torch.eye(size, dtype=torch.float64)
            for k in range(2, size + 1):
                trace = torch.linalg.matrix_power(centred, k).diagonal(dim1=1, dim2=2).sum(-1)
                torch.testing.assert_close(moments[:, column + k - 1], trace / size)
            column += size
    assert column == spec.ndescriptor


@pytest.mark.parametrize("inputs", ["moments", "eigenvalues"])
def test_correction_is_smooth_where_eigenvalues_cross(inputs):
    """Two eigenvalues of a block cross at t = 0: dE/dt is continuous with moment inputs; with sorted
    eigenvalues it jumps (the kink that stalls the SCF, README Performance)."""
    model = CorrectionModel.random(seed=3, scale=1.0, inputs=inputs)
    slopes = []
    for t0 in (-1e-7, 1e-7):
        t = torch.tensor(t0, dtype=torch.float64, requires_grad=True)
        descriptors = eigen_descriptors(_blocks_with_crossing(model.spec, t), model.spec)
        (slope,) = torch.autograd.grad(model(descriptors, torch.tensor([1])).sum(), t)
        slopes.append(float(slope))
    jump = abs(slopes[1] - slopes[0]) / max(abs(s) for s in slopes)
    if inputs == "moments":
        assert jump < 1e-4
    else:
        assert jump > 1e-2


def test_models_without_recorded_inputs_read_as_eigenvalue_models(tmp_path):
    model = CorrectionModel.random(inputs="eigenvalues")
    path = tmp_path / "old.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    meta = json.loads(payload["metadata"])
    del meta["network"]["inputs"]
    torch.save({**payload, "metadata": json.dumps(meta)}, path)
    assert CorrectionModel.load(path).inputs == "eigenvalues"
    assert CorrectionModel.random().inputs == "moments"
    with pytest.raises(ModelError, match="unknown network inputs"):
        CorrectionModel(("H", "O"), inputs="sorted")


def test_null_model_is_exactly_zero():
    model = CorrectionModel.null()
    x = torch.rand(4, model.spec.ndescriptor, dtype=torch.float64, requires_grad=True)
    energy = model(x, torch.tensor([0, 1, 0, 1])).sum()
    (grad,) = torch.autograd.grad(energy, x)
    assert energy.item() == 0.0 and torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("content, message", [
    (b"", "corrupt"),
    (b"not a torch file at all", "corrupt"),
])
def test_corrupt_model_files(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as info:
        CorrectionModel.load(path)
    assert "\n" not in str(info.value)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelError, match="not a deepks-es model"):
        CorrectionModel.load(path)


def test_truncated_model_file(tmp_path, random_model):
    path = tmp_path / "model.pt"
    random_model.save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ModelError, match="corrupt"):
        CorrectionModel.load(path)


def test_missing_model_and_default(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(tmp_path / "missing.pt"))
    with pytest.raises(ModelError, match="is a directory"):
        resolve_model(str(tmp_path))
    assert resolve_model("none") is None
    monkeypatch.setattr(registry, "shipped_model_path", lambda name="default": tmp_path / "default_model.pt")
    with pytest.raises(ModelError, match="shipped model .* is missing"):
        resolve_model("default")


def test_default_model_moves_pbe_to_hse06(dimer):
    """The shipped model, self-consistent on a dimer it never saw, lands near HSE06 where PBE is > 2 eV off."""
    trained = CorrectionModel.from_file(resolve_model("default"))
    assert trained.elements == ("H", "O") and trained.provenance["kind"] == "deepks-es train"
    assert shipped_model_path().stat().st_size < 2_000_000
    model, pbe, hse = (make_engine(name, xc=xc).compute(dimer)
                       for name, xc in (("default", "PBE"), ("none", "PBE"), ("none", "HSE06")))
    assert model.converged and abs(pbe.gap - hse.gap) * HARTREE_EV > 2.0
    assert abs(model.gap - hse.gap) * HARTREE_EV < 0.1
    assert abs(model.homo - hse.homo) * HARTREE_EV < 0.1 and abs(model.lumo - hse.lumo) * HARTREE_EV < 0.1


def test_mismatched_settings(random_model):
    with pytest.raises(SettingsError, match="functional 'PBE'"):
        pyscf_engine(random_model, xc="HSE06")
    with pytest.raises(SettingsError, match="basis"):
        pyscf_engine(random_model, basis="def2-svp", pseudo=None)


def test_uncovered_element():
    model = CorrectionModel.random(elements=("O",))
    with pytest.raises(ModelError, match="covers elements O but the structure has H"):
        model.element_index(["O", "H", "H"])


def _trained_like_members(hiddens=((64, 64, 64),) * 3) -> list[CorrectionModel]:
    """Random models, each with its own input standardisation, energy offsets and baselines, as trainings of one
    recipe with different seeds have."""
    generator = torch.Generator().manual_seed(7)
    members = []
    for seed, hidden in enumerate(hiddens):
        model = CorrectionModel.random(seed=seed, scale=0.05, hidden=hidden)
        shape = model.input_shift.shape
        model.input_shift.copy_(torch.randn(shape, generator=generator, dtype=torch.float64))
        model.input_scale.copy_(0.5 + torch.rand(shape, generator=generator, dtype=torch.float64))
        model.atom_energy.copy_(0.1 * torch.randn(2, generator=generator, dtype=torch.float64))
        with torch.no_grad():  # random() zeroes the output bias; a training does not
            for net in model.nets.values():
                net[-1].bias.copy_(0.05 * torch.randn(1, generator=generator, dtype=torch.float64))
        model.provenance = {"kind": "deepks-es train", "validation_frames": [f"{seed:06d}"],
                            "baselines": {"atom_energy_ha": {"H": -0.1 * seed, "O": 0.2 * seed},
                                          "shift_ev": {"gap": 2.0 + seed}, "frames": 30}}
        members.append(model)
    return members


def test_ensemble_is_the_mean_of_its_members(tmp_path):
    """Energies and their derivatives (the SCF potential) of the written ensemble are its members' means."""
    members = _trained_like_members(((64, 64, 64), (64, 64, 64), (32, 16, 8)))  # widths may differ, depths not
    mean_model(members, sources=["a.pt", "b.pt", "c.pt"]).save(tmp_path / "ensemble.pt")
    ensemble = CorrectionModel.load(tmp_path / "ensemble.pt")
    assert ensemble.hidden == (160, 144, 136) and ensemble.metadata["kind"] == "deepks"
    x = torch.rand(7, ensemble.spec.ndescriptor, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([0, 1, 1, 0, 1, 1, 0])
    energy = ensemble(x, idx)
    expected = torch.stack([m(x, idx) for m in members]).mean(0)
    torch.testing.assert_close(energy, expected, rtol=0, atol=1e-13)
    (gradient,) = torch.autograd.grad(energy.sum(), x)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-12, atol=1e-14)
    provenance = ensemble.provenance
    assert provenance["kind"] == "ensemble" and provenance["sources"] == ["a.pt", "b.pt", "c.pt"]
    assert "validation_frames" not in provenance  # each member's held-out frames trained the others
    assert provenance["baselines"]["atom_energy_ha"] == pytest.approx({"H": -0.1, "O": 0.2})
    assert provenance["baselines"]["shift_ev"] == pytest.approx({"gap": 3.0})


def test_ensemble_refuses_models_of_other_setups():
    members = _trained_like_members()
    with pytest.raises(ModelError, match="member 1 differs from member 0 in its network depth"):
        mean_model([members[0], CorrectionModel.random(hidden=(32, 32))])
    with pytest.raises(ModelError, match="member 1 differs from member 0 in its elements"):
        mean_model([members[0], CorrectionModel.random(elements=("O",))])
    with pytest.raises(ModelError, match="at least two"):
        mean_model(members[:1])
    with pytest.raises(ModelError, match="hidden layers"):
        mean_model([CorrectionModel.random(hidden=()), CorrectionModel.random(hidden=())])


def test_ensemble_of_the_shipped_model_with_itself_is_the_shipped_model(tmp_path, dimer, capsys):
    """Through the command line, the file and the self-consistent engine: energy, forces and gap unchanged."""
    from deepks_es.cli import main

    assert main(["ensemble", "default", "default", "-o", str(tmp_path / "twice.pt")]) == 0
    shipped, twice = (make_engine(name).compute(dimer) for name in ("default", str(tmp_path / "twice.pt")))
    assert twice.converged
    assert twice.energy == pytest.approx(shipped.energy, abs=1e-9)
    np.testing.assert_allclose(twice.forces, shipped.forces, atol=1e-7)
    assert twice.gap == pytest.approx(shipped.gap, abs=1e-7)
    assert main(["ensemble", "default", "surrogate", "-o", str(tmp_path / "mixed.pt")]) == 1
    assert "is a 'surrogate' model, not a DeePKS-ES correction model" in capsys.readouterr().err
    assert not (tmp_path / "mixed.pt").exists()
