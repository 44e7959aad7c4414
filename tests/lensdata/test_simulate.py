"""The simulator: columns, balance, determinism, shared draws, noise and SNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from caustics.lenses import func as lens_func
from scipy import ndimage, stats

from lensdata import lensing, noise, recipe, render
from lensdata import simulate as sim
from lensdata.errors import DataError

PARAM_COLUMNS = ("label", "target", "n_subhalos", "subhalo_mass_total", "axion_mass",
                 "vortex_length", "source_x", "source_y", "image_seed", "snr")


@pytest.fixture(scope="module")
def model2_small():
    return sim.simulate("model2", 66, 3, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def counterfactuals():
    """The same 24 image seeds rendered as no_sub, cdm and axion (model2-physical: noisy, with the models)."""
    seeds = sim.image_seeds(11, 0, 24)
    return seeds, [sim.render("model2-physical", seeds, np.full(24, c), return_model=True)
                   for c in range(3)]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize("kwargs, match", [
    ({"instrument": "model9"}, "unknown instrument"),
    ({"n": 2}, "at least 3"),
    ({"workers": 0}, "workers"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": -1}, "seed"),
])
def test_bad_input_is_a_one_line_config_error(kwargs, match):
    args = {"instrument": "model2", "n": 6, "seed": 0, **kwargs}
    with pytest.raises(DataError, match=match) as info:
        sim.simulate(args.pop("instrument"), args.pop("n"), args.pop("seed"), progress=False, **args)
    assert "\n" not in str(info.value)


def test_presets_are_frozen_and_match_the_deeplense_instruments():
    assert set(sim.INSTRUMENTS) == {"model1", "model2", "model3", "model1-physical", "model2-physical",
                                    "model3-physical"}
    for recipe_name in ("", "-physical"):
        p1, p2, p3 = (sim.INSTRUMENTS[k + recipe_name] for k in ("model1", "model2", "model3"))
        assert (p1.pixels, p1.pixelscale, p1.psf_fwhm) == (150, 0.05, 0.087)
        assert (p2.pixels, p2.pixelscale, p2.psf_fwhm) == (64, 0.101, 0.16)
        assert (p3.pixels, p3.pixelscale, p3.psf_fwhm) == (64, 0.08, 0.08)
        assert {p.recipe for p in (p1, p2, p3)} == {"physical" if recipe_name else "deeplense"}
        assert sim.INSTRUMENTS[p2.counterpart].counterpart == p2.name
    with pytest.raises(AttributeError):
        p1.pixels = 10  # type: ignore[misc]


# ---------------------------------------------------------------- columns and classes


def test_columns_shapes_and_balanced_classes(model2_small):
    out = model2_small
    assert out["image"].shape == (66, 64, 64) and out["image"].dtype == np.float32
    assert np.isfinite(out["image"]).all()
    for key in PARAM_COLUMNS:
        assert out[key].shape == (66,), key
    np.testing.assert_array_equal(out["label"], np.arange(66) % 3)
    assert np.bincount(out["label"]).tolist() == [22, 22, 22]
    assert out["label"].dtype == np.int64 and out["image_seed"].dtype == np.int64
    assert len(set(out["image_seed"].tolist())) == 66
    assert np.abs(out["source_x"]).max() <= 0.35 and np.abs(out["source_y"]).max() <= 0.35


def test_target_and_substructure_parameters(model2_small):
    out = model2_small
    axion, cdm, none = (out["label"] == 2), (out["label"] == 1), (out["label"] == 0)
    target = out["target"]
    assert np.isnan(target[~axion]).all()
    assert ((target[axion] >= -24) & (target[axion] <= -22)).all()
    np.testing.assert_allclose(out["axion_mass"][axion], 10.0 ** target[axion], rtol=1e-12)
    assert np.isnan(out["axion_mass"][~axion]).all()
    # full length = 2 x 0.03" x (1e-22 eV / m_a): 0.06" at 1e-22 eV ... 6" at 1e-24 eV
    np.testing.assert_allclose(out["vortex_length"][axion], 0.06 * 1e-22 / out["axion_mass"][axion],
                               rtol=1e-12)
    assert np.isnan(out["vortex_length"][~axion]).all()
    assert (out["n_subhalos"][cdm] == 25).all() and (out["n_subhalos"][~cdm] == 0).all()
    total = out["subhalo_mass_total"]
    assert ((total[cdm] > 25 * 1e6) & (total[cdm] < 25 * 1e10)).all()
    assert (total[~cdm] == 0).all()
    assert none.sum() == 22


def test_subhalo_masses_follow_the_power_law():
    spec = sim.INSTRUMENTS["model2"]
    one = lensing.einstein_radius(1.0, convention=spec.distances)
    masses = np.concatenate([
        (lambda d: (d["sub_rein"] / one) ** 2)(render._draw(spec, s, 1))
        for s in range(400)])
    assert masses.min() >= 1e6 * (1 - 1e-9) and masses.max() <= 1e10 * (1 + 1e-9)
    a = recipe.SUBHALO_SLOPE + 1
    cdf = lambda m: (m**a - 1e6**a) / (1e10**a - 1e6**a)  # noqa: E731
    assert stats.kstest(masses, cdf).pvalue > 1e-3


# ---------------------------------------------------------------- determinism


def test_bit_identical_across_batch_sizes(model2_small):
    for batch in (1, 5):
        assert _same(sim.simulate("model2", 66, 3, batch_size=batch, progress=False), model2_small)


def test_bit_identical_across_batch_sizes_model1_odd_image_size():
    ref = sim.simulate("model1", 10, 5, batch_size=10, progress=False)
    assert _same(sim.simulate("model1", 10, 5, batch_size=3, progress=False), ref)


def test_a_slice_of_a_run_equals_the_same_images_of_the_whole_run(model2_small):
    part = sim.simulate("model2", 20, 3, start=30, batch_size=7, progress=False)
    whole = {k: v[30:50] for k, v in model2_small.items()}
    assert _same(part, whole)


def test_bit_identical_with_two_worker_processes():
    ref = sim.simulate("model3", 24, 8, batch_size=24, progress=False)
    assert _same(sim.simulate("model3", 24, 8, batch_size=5, workers=2, progress=False), ref)


@pytest.mark.ray
@pytest.mark.slow
def test_bit_identical_over_ray_tasks(ray_local):
    ref = sim.simulate("model2", 12, 4, progress=False)
    assert _same(sim.simulate("model2", 12, 4, workers=2, address="local", progress=False), ref)


def test_different_seeds_give_different_images():
    a = sim.simulate("model3", 3, 0, progress=False)["image"]
    b = sim.simulate("model3", 3, 1, progress=False)["image"]
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- shared draws across classes


def test_classes_share_lens_source_and_noise(counterfactuals):
    seeds, (none, cdm, axion) = counterfactuals
    rms = noise.sky_noise_rms("model2-physical")
    for other in (cdm, axion):
        np.testing.assert_array_equal(other["source_x"], none["source_x"])
        np.testing.assert_array_equal(other["source_y"], none["source_y"])
        # Wherever the noiseless images agree, the noisy ones are the same bits: shared noise.
        agree = np.abs(other["model"] - none["model"]) < 1e-6 * rms
        assert agree.sum() > 1000
        assert np.array_equal(other["image"][agree], none["image"][agree])
    # The class mix of a batch does not touch a no_sub image.
    mixed = sim.render("model2-physical", seeds[:3], [1, 0, 2])["image"][1]
    assert mixed.tobytes() == none["image"][1].tobytes()


def _substructure_deflection(spec, draws, label):
    """|delta alpha| of each image's subhalos or vortex on the simulator's fine grid."""
    geo = render._geometry(spec, "cpu")
    out = []
    for d in draws:
        if label == 1:
            ax = torch.zeros_like(geo.x)
            ay = torch.zeros_like(geo.y)
            for x0, y0, r in zip(d["sub_x"], d["sub_y"], d["sub_rein"]):
                dx, dy = lens_func.reduced_deflection_angle_point(
                    torch.tensor(x0), torch.tensor(y0), torch.tensor(r), geo.x, geo.y)
                ax, ay = ax + dx, ay + dy
        else:
            ax, ay = lensing.line_deflection(geo.x, geo.y, 0.0, 0.0, d["cos"], d["sin"],
                                             d["length"], lensing.einstein_radius(recipe.VORTEX_MASS),
                                             recipe.VORTEX_SOFTENING)
        out.append(torch.hypot(ax, ay).numpy())
    return geo, out


@pytest.mark.parametrize("label", [1, 2])
def test_images_differ_only_where_the_substructure_deflects(counterfactuals, label):
    """|cdm - no_sub| <= max|grad source| x max|delta alpha| over each pixel's PSF footprint.

    The difference of two images of one source is I(beta - delta alpha) - I(beta), averaged with the
    PSF's positive weights: by the mean-value theorem it is bounded by the source's largest
    gradient times the largest substructure deflection that reaches the pixel. So the images
    differ only where the substructure moves light, by no more than it can move it, and nowhere
    else; and the difference is significant (the classes are learnable).
    """
    seeds, renders = counterfactuals
    spec = sim.INSTRUMENTS["model2-physical"]
    draws = [render._draw(spec, int(s), label) for s in seeds]
    geo, dalpha = _substructure_deflection(spec, draws, label)
    q, _ = render._lenstronomy_q_phi(recipe.SOURCE_E1, recipe.SOURCE_E2)
    re = recipe.SOURCE_R_SERSIC / math.sqrt(q)
    k = 1.678347
    grad_max = spec.source_ie * math.exp(k) * k / (re * q)  # |grad I| <= Ie e^k k / (Re q)
    radius = (len(geo.kernel) - 1) // 2
    ss = spec.supersample
    significant, tightness = 0, []
    for i, da in enumerate(dalpha):
        reach = ndimage.maximum_filter(da, size=2 * radius + 1, mode="nearest")
        reach = reach[geo.pad : geo.pad + geo.fine, geo.pad : geo.pad + geo.fine]
        reach = reach.reshape(spec.pixels, ss, spec.pixels, ss).max(axis=(1, 3))
        bound = grad_max * reach * spec.pixelscale**2
        diff = np.abs(renders[label]["model"][i] - renders[0]["model"][i])
        assert (diff <= bound * (1 + 1e-9) + 1e-12).all()
        significant += diff.max() > 3 * noise.sky_noise_rms(spec, renders[0]["exposure"][i])
        tightness.append((diff / np.maximum(bound, 1e-300)).max())
    assert significant >= 0.75 * len(dalpha)
    assert min(tightness) > 0.1  # the bound is within a few times of the real difference


# ---------------------------------------------------------------- noise and SNR


def test_macro_lens_matches_lenstronomy():
    """The fixed SIE + shear (lenstronomy e1=0.1, gamma1=0.05) is the same lens in caustics."""
    from lenstronomy.LensModel import lens_model

    geo = render._geometry(sim.INSTRUMENTS["model2-physical"], "cpu")
    x, y = geo.x[::9, ::9], geo.y[::9, ::9]
    rein = lensing.einstein_radius(recipe.HALO_MASS)
    ref = lens_model.LensModel(["SIE", "SHEAR"])
    ax, ay = ref.alpha(x.numpy(), y.numpy(), [
        {"theta_E": rein, "e1": 0.1, "e2": 0.0, "center_x": 0.0, "center_y": 0.0},
        {"gamma1": 0.05, "gamma2": 0.0}])
    np.testing.assert_allclose(geo.bx0[::9, ::9].numpy(), x.numpy() - ax, atol=1e-8)
    np.testing.assert_allclose(geo.by0[::9, ::9].numpy(), y.numpy() - ay, atol=1e-8)


def test_simulate_to_dataset_writes_a_dataset(sim_model2_tiny):
    from lensdata import store

    manifest = store.read_manifest(sim_model2_tiny)
    assert manifest["instrument"] == "model2"
    data = store.load_dataset(sim_model2_tiny)
    assert data is not None


# ---------------------------------------------------------------- splits of nested sets


def test_no_image_is_train_in_one_set_and_val_or_test_in_another(tmp_path):
    """Sets of any size and class subset of one run agree on every image's split (no leak)."""
    from lensdata import store

    made = {name: store.load_dataset(sim.simulate_to_dataset("model2", n, 0, tmp_path / name,
                                                             progress=False, classes=classes))
            for name, n, classes in (("n30", 30, sim.CLASSES), ("n300", 300, sim.CLASSES),
                                     ("n121", 121, sim.CLASSES), ("axion", 90, ("axion",)),
                                     ("two", 50, ("no_sub", "axion")))}
    split_of: dict[int, str] = {}
    image_of: dict[int, bytes] = {}
    for data in made.values():
        for seed, split, image in zip(data.params["image_seed"], data.splits, data.images):
            assert split_of.setdefault(int(seed), split) == split
            assert image_of.setdefault(int(seed), image.tobytes()) == image.tobytes()
    # The small set is inside the large one, and the subsets hold the same images of their classes.
    assert set(made["n30"].params["image_seed"]) <= set(made["n300"].params["image_seed"])
    big = made["n300"]
    for c, name in enumerate(sim.CLASSES):  # stratified: 70/15/15 of every class to within a block
        rows = big.labels == c
        for split, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs((big.splits[rows] == split).sum() - share * rows.sum()) <= 3, (name, split)
    assert made["axion"].classes == ("axion",) and np.isfinite(made["axion"].targets).all()


def test_class_subsets_are_the_runs_images_of_those_classes():
    whole = sim.simulate("model2", 30, 4, progress=False)
    axion = sim.simulate("model2", 10, 4, progress=False, classes=("axion",))
    assert (axion["label"] == 0).all()
    np.testing.assert_array_equal(axion["image"], whole["image"][whole["run_index"] % 5 == 2])
    np.testing.assert_array_equal(axion["target"], whole["target"][whole["run_index"] % 5 == 2])


@pytest.mark.parametrize("classes, match", [
    ("fdm", "unknown class 'fdm'; choose from no_sub, cdm, axion, wdm, sidm"),
    ("axion,axion", "class given twice"),
    ("", "no classes given"),
    (",", "no classes given"),
])
def test_bad_classes_are_one_line(classes, match):
    with pytest.raises(DataError, match=match) as err:
        sim.simulate("model2", 6, 0, progress=False, classes=classes)
    assert "\n" not in str(err.value)
