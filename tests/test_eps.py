"""eps units (asgan_base.eps): parse, range, label in both units, and the checkpoint label that
every probe record carries (probes.io.checkpoints)."""

from __future__ import annotations

import pytest

from asgan_base.eps import EpsUnit, named, of_meta, parse_list, parse_number
from asgan_base.errors import UserError
from probes.io.checkpoints import facts, kind
from trainers.data import eps_unit_of_config as of_config

RING = {"pixel_range": [-1.5, 1.5], "data": {"name": "ring8", "shape": [2]},
        "eps_unit": "mode-std", "eps_scale": 0.01}
MNIST = {"pixel_range": [-1.0, 1.0], "data": {"name": "mnist10k", "shape": [1, 28, 28]},
         "eps_unit": "pixel", "eps_scale": 2.0}
OLD_RING = {"pixel_range": [-1.5, 1.5], "data": {"name": "ring8", "shape": [2]}}


@pytest.mark.parametrize("text,value", [("1/255", 1 / 255), ("0.5/255", 0.5 / 255),
                                        ("1.5", 1.5), ("0", 0.0), (" 3/2 ", 1.5), (2, 2.0)])
def test_parse_number_is_unit_free(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["-1/255", "abc", "1/0", "nan", "inf", ""])
def test_parse_number_rejects_in_one_line(text):
    with pytest.raises(UserError) as e:
        parse_number(text)
    assert "\n" not in str(e.value)


def test_parse_list():
    assert parse_list("0,0.5,1.5") == [0.0, 0.5, 1.5]
    assert parse_list("0, 1/255,") == pytest.approx([0, 1 / 255])
    with pytest.raises(UserError, match="empty eps list"):
        parse_list(" , ")


def test_each_unit_has_its_range():
    pix, ring, grid = of_meta(MNIST), of_meta(RING), EpsUnit("mode-std", 0.05, 10.0)
    assert (pix.top, ring.top, grid.top) == (1.0, pytest.approx(300.0), pytest.approx(200.0))
    assert ring.parse("1.5") == 1.5 and ring.parse("0.5/255") == pytest.approx(0.5 / 255)
    with pytest.raises(UserError, match=r"eps 1.5 is outside \[0, 1\].*pixel"):
        pix.parse("1.5")
    with pytest.raises(UserError, match=r"outside \[0, 300\].*mode-std.*one std of a mode"):
        ring.check(301)
    with pytest.raises(UserError):
        ring.check(float("nan"))


def test_labels_in_both_units():
    pix, ring = of_meta(MNIST), of_meta(RING)
    assert [pix.label(e) for e in (0, 0.5 / 255, 1 / 255, 8 / 255)] == [
        "0/255", "0.5/255", "1/255", "8/255"]
    assert [ring.label(e) for e in (0, 0.5, 1.5)] == ["0 std", "0.5 std", "1.5 std"]
    assert ring.label(0.8642, 3) == "0.864 std" and pix.label(1.2837 / 255, 3) == "1.28/255"
    assert of_meta(OLD_RING).label(2 / 255) == "2/255 of the box"
    assert (pix.number(2 / 255), ring.number(0.5)) == (pytest.approx(2.0), 0.5)
    assert pix.from_number(0.5) == pytest.approx(0.5 / 255) and ring.from_number(0.5) == 0.5
    assert "pixel" in pix.axis and "std of a mode" in ring.axis and "box" in named("box").axis


def test_of_meta_reads_what_the_checkpoint_records():
    assert of_meta(RING) == EpsUnit("mode-std", 0.01, 3.0)
    assert of_meta(MNIST) == EpsUnit("pixel", 2.0, 2.0)
    old = of_meta(OLD_RING)  # before eps units: pixels of the plotting box, and it says so
    assert (old.name, old.scale, old.recorded, old.box) == ("pixel", 3.0, False, True)
    assert "not recorded" in old.text and "plotting box" in old.text
    foreign = of_meta({"pixel_range": [0.0, 1.0], "family": {"family": "basicsr"}})
    assert (foreign.name, foreign.scale, foreign.box) == ("pixel", 1.0, False)
    assert EpsUnit.from_dict(of_meta(RING).to_dict()) == of_meta(RING)


def test_of_config_resolves_auto_on_the_data():
    assert of_config({"data": "ring8", "eps_unit": "auto"}).label(0.5) == "0.5 std"
    assert of_config({"data": "mnist10k", "eps_unit": "auto"}).label(0.5 / 255) == "0.5/255"
    assert of_config({"data": "ring8"}).label(2 / 255) == "2/255 of the box"  # old config


def test_checkpoint_label_names_eps_in_its_unit():
    """A ring8 AS-GAN at 0.5 std was labelled "eps 127.5/255" before issue 24."""
    ring = dict(RING, config={"trainer": "asgan", "eps": 0.5, "perturbation": "fgsm"})
    mnist = dict(MNIST, config={"trainer": "asgan", "eps": 0.5 / 255, "perturbation": "fgsm"})
    assert facts(ring, "runs/r/ckpt-000010.safetensors")["label"] == (
        "r/ckpt-000010 (asgan, fgsm eps 0.5 std)")
    assert facts(mnist, "runs/m/ckpt-000010.safetensors")["label"] == (
        "m/ckpt-000010 (asgan, fgsm eps 0.5/255)")
    assert facts(ring, "x.safetensors")["eps_label"] == "0.5 std"
    base = dict(RING, config={"trainer": "baseline", "eps": 0.5})
    assert facts(base, "x.safetensors")["eps_label"] is None and kind(
        facts(base, "x.safetensors")) == "baseline"


def _recs(unit: EpsUnit, grid) -> list[dict]:
    return [{"label": "D", "method": "fgsm", "population": "real", "eps": e,
             "flip_rate": i / 4, "warning": None, "eps_unit": unit.to_dict()}
            for i, e in enumerate(grid)]


def test_attack_figure_draws_eps_in_the_records_unit(tmp_path, monkeypatch):
    import probes.viz.attack as A

    figs = []
    save = A.save_figure
    monkeypatch.setattr(A, "save_figure",
                        lambda fig, path, **kw: figs.append(fig) or save(fig, path, **kw))
    A.plot_flip_curves(_recs(of_meta(RING), (0, 0.5, 1.5)), tmp_path / "std.png")
    A.plot_flip_curves(_recs(of_meta(MNIST), (0, 1 / 255, 4 / 255)), tmp_path / "pix.png")
    (std_ax,), (pix_ax,) = (f.axes for f in figs)
    assert std_ax.get_xlabel() == of_meta(RING).axis and "std of a mode" in std_ax.get_xlabel()
    assert list(std_ax.lines[0].get_xdata()) == [0, 0.5, 1.5]
    assert pix_ax.get_xlabel() == of_meta(MNIST).axis
    assert list(pix_ax.lines[0].get_xdata()) == pytest.approx([0, 1, 4])  # grey levels
    with pytest.raises(UserError, match="mix eps units"):
        A.plot_flip_curves(_recs(of_meta(RING), (0.5,)) + _recs(of_meta(MNIST), (1 / 255,)),
                           tmp_path / "mixed.png")
