"""Sets read from a folder of image files, decoded lazily in ``get``: CelebA, LSUN (exported
to images) and any folder of images (``imagefolder``)."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch

from asgan_base.errors import UserError
from trainers.data.dataset import (
    IMAGE_RANGE,
    Dataset,
    _check_n,
    _check_resolution,
    _existing_dir,
    _index,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_CROP = 140  # the usual 64 px CelebA protocol: center crop 140x140 of the 178x218 aligned


def _list_images(name: str, folder: Path, layout: str, *, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    files = sorted((p for p in folder.glob(pattern)
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(folder).as_posix())  # same order on every machine
    if not files:
        raise UserError(f"{name}: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; "
                        f"expected {layout}; pass --data-root")
    return files


def _decode_errors(Image) -> tuple[type[BaseException], ...]:
    """What Pillow's decoders raise on a malformed file. Besides OSError (unidentified or
    truncated images) its plugins signal bad structure with SyntaxError ("broken PNG file"),
    ValueError/TypeError (bad header fields), EOFError/struct.error (short reads) and
    IndexError/KeyError (palette, mode or tag lookups); the bomb guard raises
    DecompressionBombError, or DecompressionBombWarning, which ``decode_image`` makes an error."""
    return (OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error, IndexError,
            KeyError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def decode_image(path: str | os.PathLike):
    """Decode one image file in full as an RGB ``PIL.Image``; UserError naming the file if it
    is not a readable image or declares more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``.

    Pillow itself only *warns* between 1x and 2x that limit (~89M pixels) and then decodes
    the lot; here the warning is an error, raised by ``Image.open`` from the header, before
    any pixel is decoded (raise ``Image.MAX_IMAGE_PIXELS`` for legitimately huge photos).
    """
    from PIL import Image  # lazy: only folder sets need it

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                return im.convert("RGB")  # forces a full decode: truncated files fail here
    except _decode_errors(Image) as err:
        detail = " ".join(str(err).split())[:160] or type(err).__name__
        raise UserError(f"{path}: cannot decode the image ({detail}); remove or replace it") \
            from None


def _folder_getter(files: list[Path], resolution: int, crop: int | None):
    """Batch getter decoding files on demand: center crop (``crop`` px, or the largest square),
    bilinear resize to ``resolution`` (Pillow antialiases when shrinking), RGB, [-1, 1]."""
    from PIL import Image  # lazy: only folder sets need it

    def load(path: Path) -> torch.Tensor:
        im = decode_image(path)
        w, h = im.size
        side = min(w, h) if crop is None else min(crop, w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        im = im.resize((resolution, resolution), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)

    def get(idx: torch.Tensor) -> torch.Tensor:
        batch = torch.stack([load(files[i]) for i in _index(idx).tolist()])  # (B, 3, r, r)
        return batch.float() / 127.5 - 1.0

    return get


def _folder_dataset(name, files, *, resolution, n, crop, info) -> Dataset:
    resolution = _check_resolution(name, resolution, 64)
    _check_n(name, n, len(files))
    files = files[:n] if n is not None else files
    return Dataset(
        name=name, shape=(3, resolution, resolution), pixel_range=IMAGE_RANGE, n=len(files),
        get=_folder_getter(files, resolution, crop), labels=None,
        info={**info, "resolution": resolution, "files": len(files)},
    )


CELEBA_LAYOUT = "ROOT/img_align_celeba/*.jpg (aligned CelebA), or ROOT holding the jpgs"
LSUN_LAYOUT = "ROOT/**/*.jpg|png|webp (images exported from the LSUN lmdb)"
IMAGEFOLDER_LAYOUT = "ROOT/**/*.jpg|jpeg|png|webp|bmp (any folder of images, searched recursively)"


def load_celeba(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """Aligned CelebA: center crop 140x140 (the usual 64 px protocol), resize to
    ``resolution`` (default 64); (3, r, r) in [-1, 1]; no labels."""
    base = _existing_dir("celeba", root, CELEBA_LAYOUT)
    folder = base / "img_align_celeba"
    folder = folder if folder.is_dir() else base
    files = _list_images("celeba", folder, CELEBA_LAYOUT, recursive=False)
    return _folder_dataset("celeba", files, resolution=resolution, n=n, crop=CELEBA_CROP,
                           info={"source": str(folder), "protocol": "center crop 140, resize",
                                 "credit": "CelebA by Ziwei Liu, Ping Luo, Xiaogang Wang, "
                                           "Xiaoou Tang (non-commercial research use)"})


def load_lsun(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """LSUN exported to image files: center crop to square, resize to ``resolution``
    (default 64); (3, r, r) in [-1, 1]; no labels."""
    base = _existing_dir("lsun", root, LSUN_LAYOUT)
    if (base / "data.mdb").exists():
        raise UserError(f"lsun: {base} is an lmdb database, which is not supported; export it "
                        f"to images first (LSUN's `python data.py export`); expected {LSUN_LAYOUT}")
    files = _list_images("lsun", base, LSUN_LAYOUT, recursive=True)
    return _folder_dataset("lsun", files, resolution=resolution, n=n, crop=None,
                           info={"source": str(base), "protocol": "center square crop, resize",
                                 "credit": "LSUN by Fisher Yu et al."})


def load_imagefolder(*, root=None, resolution=None, seed=0, n=None) -> Dataset:
    """Any folder of images (recursive, sorted paths): center crop to square, resize to
    ``resolution`` (default 64); (3, r, r) in [-1, 1]; no labels."""
    base = _existing_dir("imagefolder", root, IMAGEFOLDER_LAYOUT)
    files = _list_images("imagefolder", base, IMAGEFOLDER_LAYOUT, recursive=True)
    return _folder_dataset("imagefolder", files, resolution=resolution, n=n, crop=None,
                           info={"source": str(base), "protocol": "center square crop, resize"})
