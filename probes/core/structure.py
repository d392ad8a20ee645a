"""How "semantic" a gradient map is: numbers for the paper's "adversarial noise".

The AS-GAN paper (Fig. 1) shows a robust D's input gradient tracing faces while a standard
D's gradient "looks like uninformative noise". Looking is not measuring: on DCGAN-32/mnist10k
the maps of both kinds still looked noisy by eye while the numbers below separated them. Each
measure is per image, takes the gradient ``g`` and the image ``x`` it was taken at, and is
invariant to the scale of ``g`` (multiplying ``g`` by c > 0 changes none of them).

Evidence (what a robust, on-manifold gradient should change; Kim et al. 2019, "Bridging
adversarial robustness and gradient interpretability", found that adversarial training pulls
a classifier's loss gradient toward the image manifold; Etmann et al. 2019 link robustness to
the alignment below):

- ``fg_share``: share of the gradient's L1 mass (mean |g| over channels) on foreground
  pixels, i.e. pixels whose grey value in [0, 1] units exceeds ``fg_threshold`` (0.5: the
  strokes of a digit). ``fg_area`` is the foreground's share of pixels, the value
  ``fg_share`` takes for a gradient spread evenly; ``fg_lift = fg_share / fg_area``.
- ``hf_share``: share of the gradient's energy (|FFT|^2 summed over channels, DC included in
  the total) at radial spatial frequency above ``hf_cutoff`` cycles/pixel (0.25: half the
  Nyquist frequency). White noise scores :func:`hf_reference` (0.80 on a 28x28 grid): noise-
  like gradients sit near it, smooth ones far below.
- ``alignment``: ``|<x, g>| / (||x|| ||g||)`` with ``x`` in [0, 1] units (background 0, so
  the cosine is not dominated by a constant background as it is in [-1, 1] units).
- ``ssim``: SSIM (scikit-image) between the Fig. 1 gradient map (clip to mean +- 3 std, mean
  |g| over channels, min-max scaled to [0, 1]) and the grey image in [0, 1] units.

Confound check (not evidence on its own):

- ``edge_corr``: Pearson correlation between the gradient map (mean |g| over channels) and
  the Sobel edge magnitude of the grey image. Edge-like gradient maps arise without any
  robustness, even from randomly initialised networks (Adebayo et al. 2018, "Sanity checks for
  saliency maps"), and ``fg_share`` rises for any D whose gradient follows stroke *edges*.
  Use it to ask whether a difference in the evidence is just edge-following; compare against
  a randomly initialised D of the same architecture.

``fg_area`` is also a confound check: fakes of different checkpoints differ in how much ink
they have, so compare ``fg_share`` on the same inputs (reals) or look at ``fg_lift``.

Torch for the batched measures, scikit-image (``filters.sobel``,
``metrics.structural_similarity``) and numpy for the per-image ones.
"""

from __future__ import annotations

import numpy as np
import torch

from probes.core.gradients import gradient_map

EVIDENCE = ("fg_share", "fg_lift", "hf_share", "alignment", "ssim")
CONFOUND_CHECKS = ("edge_corr", "fg_area")
DEFINITIONS = {
    "fg_share": "share of sum(mean_c |g|) on pixels with grey value (in [0,1] units) above "
                "the foreground threshold [evidence]",
    "fg_area": "share of pixels above the foreground threshold: fg_share of an even gradient "
               "[confound check]",
    "fg_lift": "fg_share / fg_area; 1 = no preference for foreground [evidence]",
    "hf_share": "share of |FFT(g)|^2 above the radial cutoff (cycles/pixel); white noise "
                "scores hf_reference [evidence]",
    "alignment": "|<x, g>| / (||x|| ||g||), x in [0,1] units, all channels [evidence]",
    "ssim": "SSIM between the Fig. 1 map (min-max scaled) and the grey image in [0,1] "
            "[evidence]",
    "edge_corr": "Pearson correlation of mean_c |g| with the Sobel edge magnitude of the grey "
                 "image [confound check]",
}


def to_unit(x: torch.Tensor, pixel_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Images from ``pixel_range`` to [0, 1] units (float64)."""
    lo, hi = pixel_range
    if not hi > lo:
        raise ValueError(f"pixel_range must have hi > lo, got {pixel_range}")
    return (x.detach().double() - lo) / (hi - lo)


def radial_frequency(h: int, w: int) -> torch.Tensor:
    """``(h, w)`` radial frequency in cycles/pixel of each :func:`torch.fft.fft2` bin (0 at DC,
    at most ``sqrt(0.5)`` at the corner)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, -1)
    return (fy.pow(2) + fx.pow(2)).sqrt()


def hf_reference(h: int, w: int, cutoff: float = 0.25) -> float:
    """``hf_share`` of white noise (flat spectrum) on an ``h x w`` grid: the share of FFT bins
    beyond ``cutoff``."""
    return float((radial_frequency(h, w) > cutoff).double().mean())


def hf_share(g: torch.Tensor, *, cutoff: float = 0.25) -> torch.Tensor:
    """Share of each gradient's energy above ``cutoff`` cycles/pixel.

    Args:
        g: ``(N, C, H, W)`` gradients (signed).
        cutoff: radial frequency in cycles/pixel, in (0, sqrt(0.5)); 0.5 is the Nyquist
            frequency along an axis.

    Returns:
        ``(N,)`` float64 in [0, 1]; NaN for a zero gradient.
    """
    power = torch.fft.fft2(g.detach().double()).abs().pow(2).sum(1)  # (N, H, W)
    mask = radial_frequency(*g.shape[-2:]).to(power.device) > cutoff
    return (power * mask).sum((1, 2)) / power.sum((1, 2))


def _odd_window(h: int, w: int) -> int:
    side = min(7, h, w)
    return side if side % 2 else side - 1


def _per_image(m: np.ndarray, grey: np.ndarray, n_map: np.ndarray) -> tuple[float, float]:
    """(edge_corr, ssim) of one image: raw map ``m``, grey image, Fig. 1 map ``n_map``."""
    from skimage.filters import sobel
    from skimage.metrics import structural_similarity

    edges = sobel(grey)
    if m.std() > 0 and edges.std() > 0:
        edge_corr = float(np.corrcoef(m.ravel(), edges.ravel())[0, 1])
    else:
        edge_corr = float("nan")
    span = n_map.max() - n_map.min()
    if span > 0:
        scaled = (n_map - n_map.min()) / span
        ssim = float(structural_similarity(scaled, grey, data_range=1.0,
                                           win_size=_odd_window(*grey.shape)))
    else:
        ssim = float("nan")
    return edge_corr, ssim


def structure(g: torch.Tensor, x: torch.Tensor, *, pixel_range: tuple[float, float] = (-1.0, 1.0),
              fg_threshold: float = 0.5, hf_cutoff: float = 0.25, n_std: float = 3.0
              ) -> dict[str, torch.Tensor]:
    """Structure measures of gradients ``g`` taken at images ``x`` (module docstring).

    Args:
        g: ``(N, C, H, W)`` input gradients (any scale, signed).
        x: ``(N, C, H, W)`` the images, in ``pixel_range``.
        pixel_range: ``(lo, hi)`` of ``x``.
        fg_threshold: foreground = grey value (mean over channels, [0, 1] units) above this.
        hf_cutoff: radial frequency cutoff for ``hf_share`` in cycles/pixel.
        n_std: clipping of the Fig. 1 map used by ``ssim``.

    Returns:
        ``{key: (N,) float64}`` for the keys of :data:`DEFINITIONS`; NaN where undefined
        (zero gradient, no foreground, a constant image).

    Examples:
        >>> out = input_gradients(D, x, reduce=lambda b: structure(b["grad"], b["x"]))
        >>> out["per_image"]["fg_share"].mean()
    """
    if g.dim() != 4 or g.shape != x.shape:
        raise ValueError(f"structure needs images: g and x of one shape (N, C, H, W), got "
                         f"{tuple(g.shape)} and {tuple(x.shape)}")
    g = g.detach().double()
    x01 = to_unit(x.to(g.device), pixel_range)  # (N, C, H, W) in [0, 1]
    grey = x01.mean(1)  # (N, H, W)
    m = g.abs().mean(1)  # (N, H, W): mean |g| over channels
    fg = (grey > fg_threshold).double()
    total = m.sum((1, 2))
    fg_share = (m * fg).sum((1, 2)) / total
    fg_area = fg.mean((1, 2))
    flat_g, flat_x = g.flatten(1), x01.flatten(1)
    alignment = (flat_g * flat_x).sum(1).abs() / (flat_g.norm(dim=1) * flat_x.norm(dim=1))
    maps = gradient_map(g, n_std=n_std)
    pairs = [_per_image(mi, gi, ni) for mi, gi, ni in
             zip(m.cpu().numpy(), grey.cpu().numpy(), maps.cpu().numpy())]
    edge_corr, ssim = (torch.tensor(v, dtype=torch.float64) for v in zip(*pairs))
    dev = g.device
    return {"fg_share": fg_share, "fg_area": fg_area,
            "fg_lift": fg_share / torch.where(fg_area > 0, fg_area, torch.nan),
            "hf_share": hf_share(g, cutoff=hf_cutoff), "alignment": alignment,
            "ssim": ssim.to(dev), "edge_corr": edge_corr.to(dev)}


def structure_reducer(*, pixel_range: tuple[float, float] = (-1.0, 1.0), **kwargs):
    """An :func:`probes.core.gradients.input_gradients` ``reduce`` function computing
    :func:`structure` per batch (``kwargs`` as there)."""
    return lambda batch: structure(batch["grad"], batch["x"], pixel_range=pixel_range, **kwargs)
