"""The registry of dark-matter classes: a class is one registration, seen by the simulator and the CLI.

A toy class, a point mass of a drawn mass at a drawn position, is registered for each test and
unregistered after it (the run cycle depends on the registry).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from lensdata import names, noise, recipe, render, substructure
from lensdata import simulate as sim
from lensdata.errors import DataError
from lensdata.substructure import Column, DarkMatterClass, ParameterRange, register_class, unregister_class

BUILT_IN = ("no_sub", "cdm", "axion", "wdm", "sidm")


def _toy_draw(rng: np.random.Generator, spec, bounds: tuple[float, float]) -> dict:
    from lensdata import lensing

    log_mass = float(rng.uniform(*bounds))
    radius, angle = rng.uniform(1.2, 2.0), rng.uniform(0.0, 2.0 * math.pi)  # near the Einstein ring
    return {"target": log_mass, "toy_x": np.array([radius * math.cos(angle)]),
            "toy_y": np.array([radius * math.sin(angle)]),
            "toy_rein": np.array([lensing.einstein_radius(10.0**log_mass, convention=spec.distances)]),
            "n_subhalos": 1, "subhalo_mass_total": 10.0**log_mass}


def _toy_deflect(grid, draws: list[dict]):
    import torch

    from lensdata import lensing

    def stack(key: str) -> torch.Tensor:
        return torch.tensor(np.stack([d[key] for d in draws]), dtype=torch.float64, device=grid.x.device)

    return lensing.point_masses_deflection(grid.xs, grid.ys, stack("toy_x"), stack("toy_y"), stack("toy_rein"),
                                           recipe.SUBHALO_SOFTENING)


def _toy_mass(draws: list[dict]) -> np.ndarray:
    return 10.0 ** np.array([d["target"] for d in draws])


TOY = DarkMatterClass(
    name="toy", label=-1, stream=6, draw=_toy_draw, deflect=_toy_deflect, target="log10(M_pm / Msun)",
    parameter=ParameterRange("toy_log_mass", "range of log10(point mass / Msun) of toy images, drawn uniformly",
                             default=(9.5, 10.0), limits=(8.0, 10.5)),
    columns=(Column("toy_mass", _toy_mass),))


@pytest.fixture
def toy():
    """The toy class at the next label, for one test; the registry is as it was afterwards."""
    before = substructure.names()
    cls = register_class(replace(TOY, label=len(before)))
    try:
        yield cls
    finally:
        unregister_class(cls.name)
    assert substructure.names() == before


def test_the_built_in_classes_are_found_in_label_order():
    assert substructure.names() == BUILT_IN == names.SIM_CLASSES
    assert names.SUBSTRUCTURE_PARAMETERS == {"axion": "log10(m_a / eV)", "wdm": "log10(M_hm / Msun)",
                                             "sidm": "log10(sigma_eff / cm^2 g^-1)"}
    assert [r.key for r in substructure.parameter_ranges()] == ["wdm_log_mhm", "sidm_log_sigma"]


def test_a_registered_class_is_listed_and_joins_the_run_cycle(toy):
    assert substructure.names() == (*BUILT_IN, "toy") == names.SIM_CLASSES
    assert names.SUBSTRUCTURE_PARAMETERS["toy"] == "log10(M_pm / Msun)"
    assert sim.check_classes("toy,no_sub") == ("no_sub", "toy")
    assert sim.check_ranges(None)["toy_log_mass"] == (9.5, 10.0)
    np.testing.assert_array_equal(sim.run_indices(3, ("toy",)), [5, 11, 17])  # image i is of class i % 6
    with pytest.raises(DataError, match=r"--toy-log-mass 7,9 is outside the model's range 8,10.5") as err:
        sim.check_ranges({"toy_log_mass": (7, 9)})
    assert "\n" not in str(err.value)


def test_its_images_differ_from_no_sub_only_by_its_substructure(toy):
    """Same seeds as toy and as no_sub: same source, exposure and noise; the difference is the point mass's.

    As in test_simulate: the difference of two images of one source is bounded by the source's
    largest gradient times the largest deflection that reaches the pixel through the PSF.
    """
    name = "model2-physical"
    spec = sim.INSTRUMENTS[name]
    seeds = sim.image_seeds(21, 0, 2)
    ours = render.render(name, seeds, [toy.label] * 2, return_model=True)
    plain = render.render(name, seeds, [0, 0], return_model=True)
    for key in ("source_x", "source_y", "exposure", "image_seed"):
        assert ours[key].tobytes() == plain[key].tobytes(), key
    order = list(ours)
    assert order[order.index("cored_fraction") + 1] == "toy_mass"  # its column after the built-in ones
    assert ((ours["target"] >= 9.5) & (ours["target"] <= 10.0)).all() and np.isnan(plain["target"]).all()
    np.testing.assert_array_equal(ours["toy_mass"], 10.0 ** ours["target"])
    assert np.isnan(plain["toy_mass"]).all() and (ours["n_subhalos"] == 1).all()

    geo = render._geometry(spec, "cpu")
    ax, ay = _toy_deflect(geo, [render._draw(spec, int(s), toy.label) for s in seeds])
    q, _ = render._lenstronomy_q_phi(recipe.SOURCE_E1, recipe.SOURCE_E2)
    k = 1.678347
    grad_max = spec.source_ie * math.exp(k) * k / (recipe.SOURCE_R_SERSIC / math.sqrt(q) * q)
    radius, ss = (len(geo.kernel) - 1) // 2, spec.supersample
    rms = noise.sky_noise_rms(name)
    for i, da in enumerate(np.hypot(ax.numpy(), ay.numpy())):
        reach = ndimage.maximum_filter(da, size=2 * radius + 1, mode="nearest")
        reach = reach[geo.pad : geo.pad + geo.fine, geo.pad : geo.pad + geo.fine]
        bound = grad_max * reach.reshape(spec.pixels, ss, spec.pixels, ss).max(axis=(1, 3)) * spec.pixelscale**2
        diff = np.abs(ours["model"][i] - plain["model"][i])
        assert (diff <= bound * (1 + 1e-9) + 1e-12).all()
        assert diff.max() > 3 * noise.sky_noise_rms(spec, plain["exposure"][i])  # it shows
        agree = diff < 1e-6 * rms  # where the noiseless images agree, the noisy ones are the same bits
        assert agree.sum() > 100 and np.array_equal(ours["image"][i][agree], plain["image"][i][agree])
    mixed = render.render(name, seeds, [toy.label, 0])["image"][1]  # the mix of a batch touches no image
    assert mixed.tobytes() == plain["image"][1].tobytes()


def test_a_two_image_set_of_it_is_simulated_and_described(toy, tmp_path):
    from lensdata import load_dataset, read_manifest

    path = sim.simulate_to_dataset("model2", 2, 0, tmp_path / "toy", classes="no_sub,toy", progress=False,
                                   ranges={"toy_log_mass": (9.0, 9.25)})
    data = load_dataset(path)
    assert data.classes == ("no_sub", "toy") and sorted(data.labels.tolist()) == [0, 1]
    toy_rows = data.labels == 1
    assert ((data.targets[toy_rows] >= 9.0) & (data.targets[toy_rows] <= 9.25)).all()
    extra = read_manifest(path)["extra"]
    assert extra["label_rule"].startswith("run image i is of class i % 6 (no_sub, cdm, axion, wdm, sidm, toy)")
    assert extra["targets"] == {"toy": "log10(M_pm / Msun)"} and "populations" not in extra


def test_its_range_flag_is_offered_by_the_command_line(toy, capsys):
    from tuner.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "simulate", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--toy-log-mass LOW,HIGH range of log10(point mass / Msun) of toy images, drawn uniformly " \
           "(default 9.5,10; within 8,10.5)" in shown
    assert "any of no_sub,cdm,axion,wdm,sidm,toy" in shown
    args = parser.parse_args(["data", "simulate", "--n", "2", "--out", "x", "--toy-log-mass", "9,9.5"])
    assert args.toy_log_mass == "9,9.5" and args.wdm_log_mhm is None


@pytest.mark.parametrize("change, says", [
    ({}, "cannot register dark-matter class 'toy': the name is taken"),
    ({"name": "toy2", "label": 1}, "label 1 is taken by 'cdm'; the next free label is 6"),
    ({"name": "toy2", "stream": 3}, "stream 3 is the renderer's"),
    ({"name": "toy2", "label": 7, "parameter": None, "columns": (Column("half_mode_mass", _toy_mass),)},
     "column 'half_mode_mass' belongs to 'wdm'"),
    ({"name": "toy2", "label": 7, "columns": ()}, "parameter range 'toy_log_mass' belongs to 'toy'"),
])
def test_a_taken_name_label_stream_or_column_is_refused_in_one_line(toy, change, says):
    with pytest.raises(ValueError, match=says) as err:
        register_class(replace(toy, **change))
    assert "\n" not in str(err.value)


def test_a_gap_in_the_labels_is_one_line(toy):
    register_class(replace(toy, name="far", label=toy.label + 2, parameter=None, columns=()))
    try:
        with pytest.raises(ValueError, match=r"labels must run 0..6 .*; no class has label 6") as err:
            substructure.classes()
        assert "\n" not in str(err.value)
    finally:
        unregister_class("far")
