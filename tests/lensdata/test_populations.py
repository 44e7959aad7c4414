"""WDM and SIDM classes: pyHalo populations, their mass functions, datasets and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lensdata import populations
from lensdata import simulate as sim
from lensdata.errors import DataError
from lensdata.names import SIM_CLASSES

DECADES = ((7.0, 8.0), (8.0, 9.0), (9.0, 10.0))


def counts_per_decade(masses: list[np.ndarray]) -> np.ndarray:
    """(realisations, decades) subhalo counts."""
    return np.array([[np.sum((np.log10(m) >= lo) & (np.log10(m) < hi)) for lo, hi in DECADES] for m in masses])


def pyhalos_own(model: str, parameter: float, seeds) -> list[np.ndarray]:
    """Realisations drawn by calling pyHalo's presets directly, without this project's code."""
    pyhalo = populations._import_pyhalo()
    kw = {"log_mlow": populations.LOG_MLOW, "log_mhigh": populations.LOG_MHIGH, "LOS_normalization": 0.0,
          "cone_opening_angle_arcsec": populations.CONE_ARCSEC, "kwargs_cosmo": dict(populations.COSMOLOGY)}
    out = []
    for seed in seeds:
        np.random.seed(seed)
        if model == "wdm":
            real = pyhalo.WDM(0.5, 1.0, log_mc=parameter, **kw)
        else:
            bins = [[7.0, 8.0], [8.0, 9.0], [9.0, 10.0]]
            real = pyhalo.SIDM_parametric(0.5, 1.0, bins, [parameter] * 3, **kw)
        out.append(np.array([h.mass for h in real.halos]))
    return out


def assert_same_mass_function(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Mean counts per decade equal within 3 combined Poisson sigmas (and the per-decade totals)."""
    a, b = ours.mean(0), theirs.mean(0)
    sigma = np.sqrt(a / len(ours) + b / len(theirs) + 1e-12)
    assert np.all(np.abs(a - b) <= 3 * sigma + 1e-9), (a, b, sigma)


@pytest.mark.slow
@pytest.mark.parametrize("model, parameter", [
    ("wdm", 7.5),
    # 37 s: the SIDM draw shares the WDM one's path; its cores are checked in CI by the test after next
    pytest.param("sidm", 2.0, marks=pytest.mark.long)])
def test_drawn_mass_functions_match_pyhalos_own_realisations(model, parameter):
    n = 8
    ours = [populations.draw(model, parameter, 1000 + i) for i in range(n)]
    for pop in ours:  # every halo pyHalo made is rendered, each with its profile's parameters
        assert len(pop) == pop.mass.size and np.isfinite(pop.alpha_rs).all() and (pop.rs > 0).all()
    theirs = pyhalos_own(model, parameter, range(5000, 5000 + n))
    assert_same_mass_function(counts_per_decade([p.mass for p in ours]), counts_per_decade(theirs))


@pytest.mark.slow
def test_a_larger_half_mode_mass_suppresses_more_small_halos_and_cores_follow_the_cross_section():
    light, heavy = (counts_per_decade([populations.draw("wdm", m, 7 + i).mass for i in range(3)]).mean(0)
                    for m in (7.0, 9.0))
    assert light[0] > 3 * heavy[0] and light.sum() > heavy.sum()
    weak = populations.draw("sidm", 0.5, 11)
    strong = populations.draw("sidm", 2.0, 11)
    assert np.mean(weak.profile == populations.TNFWC) < 0.05 < 0.8 < np.mean(strong.profile == populations.TNFWC)


def test_a_draw_is_a_function_of_its_seed_and_leaves_numpys_global_stream_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = populations.draw("wdm", 8.0, 42)
    assert (np.random.get_state()[1] == before).all()
    b = populations.draw("wdm", 8.0, 42)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.alpha_rs, b.alpha_rs)
    other = populations.draw("wdm", 8.0, 43)
    assert len(other) != len(a) or not np.array_equal(other.x, a.x)


def test_a_five_class_set_simulates_with_its_parameter_columns():
    out = sim.simulate("model2", 10, 3, classes="no_sub,cdm,wdm,sidm,axion", progress=False)
    np.testing.assert_array_equal(out["label"], np.arange(10) % 5)
    names = np.array(SIM_CLASSES)[out["label"]]
    assert np.isfinite(out["target"][np.isin(names, ("axion", "wdm", "sidm"))]).all()
    assert np.isnan(out["target"][np.isin(names, ("no_sub", "cdm"))]).all()
    wdm, sidm = names == "wdm", names == "sidm"
    assert ((np.log10(out["half_mode_mass"][wdm]) >= 7) & (np.log10(out["half_mode_mass"][wdm]) <= 9)).all()
    np.testing.assert_allclose(np.log10(out["half_mode_mass"][wdm]), out["target"][wdm])
    np.testing.assert_allclose(np.log10(out["sidm_cross_section"][sidm]), out["target"][sidm])
    assert np.isnan(out["half_mode_mass"][~wdm]).all() and np.isnan(out["sidm_cross_section"][~sidm]).all()
    assert ((out["cored_fraction"][sidm] >= 0) & (out["cored_fraction"][sidm] <= 1)).all()
    assert (out["n_subhalos"][wdm | sidm] > 0).all() and (out["subhalo_mass_total"][wdm | sidm] > 1e8).all()
    # The populations deflect: each pyHalo image differs from the same seed without substructure.
    plain = sim.render("model2", out["image_seed"][wdm | sidm], np.zeros(4, np.int64))
    assert all(np.abs(a - b).max() > 1e-3 * a.max() for a, b in zip(out["image"][wdm | sidm], plain["image"]))


@pytest.mark.slow
def test_the_same_seed_gives_the_same_bits_whatever_the_batch():
    one = sim.simulate("model2", 4, 5, classes="wdm,sidm", batch_size=1, progress=False)
    many = sim.simulate("model2", 4, 5, classes="wdm,sidm", batch_size=4, progress=False)
    np.testing.assert_array_equal(one["image"], many["image"])
    np.testing.assert_array_equal(one["cored_fraction"], many["cored_fraction"], strict=False)


def test_parameter_ranges_are_honoured_and_recorded(tmp_path):
    path = sim.simulate_to_dataset("model2", 4, 0, tmp_path / "wdm", classes="wdm", progress=False,
                                   ranges={"wdm_log_mhm": (8.0, 8.5)})
    from lensdata import load_dataset, read_manifest

    data = load_dataset(path)
    assert ((data.targets >= 8.0) & (data.targets <= 8.5)).all()
    extra = read_manifest(path)["extra"]
    assert extra["populations"]["parameter_ranges"] == {"wdm_log_mhm": [8.0, 8.5]}
    assert extra["targets"] == {"wdm": "log10(M_hm / Msun)"}


@pytest.mark.parametrize("ranges, match", [
    ({"wdm_log_mhm": (6.0, 8.0)}, r"outside the model's range 7,10"),
    ({"wdm_log_mhm": (9.0, 8.0)}, r"LOW <= HIGH"),
    ({"sidm_log_sigma": (0.0, 4.0)}, r"outside the model's range -1,3"),
    ({"wdm_log_mhm": ("7", "x")}, r"must be two numbers"),
    ({"m_hm": (7, 8)}, r"unknown parameter range 'm_hm'"),
])
def test_a_parameter_outside_the_models_range_is_one_line(ranges, match):
    with pytest.raises(DataError, match=match) as err:
        sim.simulate("model2", 4, 0, classes="wdm,sidm", progress=False, ranges=ranges)
    assert "\n" not in str(err.value)


def test_a_class_the_installed_extras_cannot_make_names_the_extra(monkeypatch):
    def missing():
        raise ImportError("No module named 'pyHalo'")

    monkeypatch.setattr(populations, "_import_pyhalo", missing)
    for classes in ("wdm", "no_sub,sidm"):
        with pytest.raises(DataError, match=r"needs pyHalo.*pip install 'deeplense-tuner\[dark-matter\]'") as err:
            sim.simulate("model2", 4, 0, classes=classes, progress=False)
        assert "\n" not in str(err.value)
    sim.simulate("model2", 3, 0, progress=False)  # the DeepLense classes need no extra


def test_the_command_line_refuses_an_empty_class_list_and_a_bad_range(tmp_path, capsys):
    from tuner.cli import main

    assert main(["data", "simulate", "--n", "5", "--out", str(tmp_path / "a"), "--classes", ""]) == 2
    assert "no classes given" in capsys.readouterr().err
    assert main(["data", "simulate", "--n", "5", "--out", str(tmp_path / "b"), "--classes", "wdm",
                 "--wdm-log-mhm", "5,8"]) == 2
    err = capsys.readouterr().err
    assert "outside the model's range 7,10" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_set_needs_one_image_per_class_it_names():
    with pytest.raises(DataError, match=r"n must be at least 5 images \(one per class\), got 4"):
        sim.simulate("model2", 4, 0, classes=SIM_CLASSES, progress=False)
    out = sim.simulate("model2", 2, 0, classes="no_sub,axion", progress=False)
    assert list(out["label"]) == [0, 1]
