"""Generators of broken and odd image files for tests (shared by every test that needs a messy folder).

Everything is written with Pillow (plus a few hand-made byte strings), quickly and deterministically, so
tests never depend on downloaded data. The main entry point is :func:`make_bad_folder`, which builds a
``train/`` + ``validation/`` folder mixing valid pictures with every "bad input" case of the course design
and returns what the audit should conclude for each file::

    from tests.badimages import make_bad_folder, write_jpeg
    expected = make_bad_folder(tmp_path / "student")
    # {"train/cats/empty.jpg": "problem: empty file", "train/cats/cmyk.jpg": "usable", ...}

Outcome values: ``"usable"`` (decodable, in a class that is trained on), ``"excluded"`` (decodable, but its
class has too few images and is left out), ``"ignored"`` (system file, hidden or checkpoint folder, non-image
file), or ``"problem: <words>"`` where ``<words>`` must appear in the audit's reason for that file.
Ignored folders are keys ending in ``/``.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

Color = tuple[int, int, int]

RED: Color = (220, 20, 20)
GREEN: Color = (20, 180, 40)
BLUE: Color = (20, 40, 220)

# Relpaths of the duplicates make_bad_folder plants (each pair sorted), for tests that check them.
DUPLICATE_WITHIN_SPLIT = ("train/dogs/dog_00.jpg", "train/dogs/dog_00_copy.jpg")
DUPLICATE_ACROSS_SPLITS = ("train/cats/cat_00.jpg", "validation/cats/same_as_train.jpg")
# The inside symlink (when symlinks work) is an exact copy of its target too.
DUPLICATE_VIA_SYMLINK = ("train/cats/nested/deeper/inner.jpg", "train/dogs/link_to_cat.jpg")

ROTATED_STORED_SIZE = (120, 80)
"""(width, height) of the EXIF-rotated JPEG's stored pixels; it displays as 80 wide x 120 high."""
HUGE_SIZE = (9000, 7000)


# --------------------------------------------------------------------------------------------- single files


def picture(size: tuple[int, int], color: Color, *, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A small "real-looking" picture: a background colour, a shape and a little noise (distinct per seed)."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = np.empty((height, width, 3), np.float32)
    base[:] = color
    base += rng.normal(0.0, 6.0, base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    if min(size) >= 8:
        draw = ImageDraw.Draw(image)
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        shade = tuple(int(v) for v in rng.integers(0, 255, 3))
        draw.ellipse((x0, y0, x0 + width // 3, y0 + height // 3), fill=shade)
    return image if mode == "RGB" else image.convert(mode)


def write_jpeg(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (64, 48),
    color: Color = RED,
    *,
    seed: int = 0,
    mode: str = "RGB",
    quality: int = 90,
    **save_kwargs: object,
) -> Path:
    """Write a valid JPEG of ``size`` = (width, height) with a dominant ``color``; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture(size, color, seed=seed, mode=mode).save(target, "JPEG", quality=quality, **save_kwargs)
    return target


def write_png(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (64, 48),
    color: Color = GREEN,
    *,
    seed: int = 0,
    mode: str = "RGB",
) -> Path:
    """Write a valid PNG of ``size`` = (width, height) with a dominant ``color``; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture(size, color, seed=seed, mode=mode).save(target, "PNG")
    return target


def image_bytes(image: Image.Image, fmt: str, **save_kwargs: object) -> bytes:
    """Encode a Pillow image in memory."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_kwargs)
    return buffer.getvalue()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write raw bytes (for files that are deliberately not valid images)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def write_truncated(path: str | os.PathLike[str], fmt: str = "JPEG", keep: float = 0.5) -> Path:
    """Write a noisy image in ``fmt`` cut after ``keep`` of its bytes (a download that stopped)."""
    noise = np.random.default_rng(7).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    data = image_bytes(Image.fromarray(noise, "RGB"), fmt)
    return write_bytes(path, data[: int(len(data) * keep)])


def write_cmyk_jpeg(path: str | os.PathLike[str], size: tuple[int, int] = (64, 48)) -> Path:
    """A CMYK JPEG (as from print workflows) whose pixels are pure red: C=0, M=Y=100%, K=0."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.new("CMYK", size, (0, 255, 255, 0)).save(target, "JPEG", quality=95)
    return target


def write_palette_png_with_transparency(
    path: str | os.PathLike[str], size: tuple[int, int] = (60, 40)
) -> Path:
    """A palette PNG: left half transparent (its palette colour is red), right half opaque blue."""
    width, height = size
    image = Image.new("P", size, 0)
    image.putpalette([*RED, *BLUE] + [0, 0, 0] * 254)
    ImageDraw.Draw(image).rectangle((width // 2, 0, width - 1, height - 1), fill=1)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, "PNG", transparency=0)
    return target


def write_rgba_png(path: str | os.PathLike[str], size: tuple[int, int] = (60, 40)) -> Path:
    """An RGBA PNG: left third fully transparent *red*, middle third half-transparent black, right opaque green.

    Composited on white it reads white / mid-grey / green; dropping alpha would wrongly give red / black.
    """
    width, height = size
    pixels = np.zeros((height, width, 4), np.uint8)
    third = width // 3
    pixels[:, :third] = (*RED, 0)
    pixels[:, third : 2 * third] = (0, 0, 0, 128)
    pixels[:, 2 * third :] = (*GREEN, 255)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGBA").save(target, "PNG")
    return target


def write_16bit_png(
    path: str | os.PathLike[str], size: tuple[int, int] = (60, 40), value: int = 32896
) -> Path:
    """A 16-bit grayscale PNG filled with ``value`` (default 32896 = 128 * 257, i.e. mid-grey)."""
    width, height = size
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), value, np.uint16)).save(target, "PNG")
    return target


def write_animated_gif(path: str | os.PathLike[str], size: tuple[int, int] = (32, 32)) -> Path:
    """A two-frame GIF: first frame red, second blue."""
    frames = [Image.new("RGB", size, RED), Image.new("RGB", size, BLUE)]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(target, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return target


def write_exif_rotated_jpeg(path: str | os.PathLike[str], orientation: int = 6) -> Path:
    """A JPEG stored 120x80 (blue) with a red square in its stored top-left corner and EXIF ``orientation``.

    With orientation 6 a viewer rotates it 90 degrees clockwise: it displays 80 wide x 120 high with the red
    square in the top-RIGHT corner.
    """
    width, height = ROTATED_STORED_SIZE
    image = Image.new("RGB", (width, height), BLUE)
    ImageDraw.Draw(image).rectangle((0, 0, 31, 31), fill=RED)
    exif = Image.Exif()
    exif[0x0112] = orientation
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, "JPEG", quality=95, exif=exif.tobytes())
    return target


def write_heic(
    path: str | os.PathLike[str], size: tuple[int, int] = (64, 48), color: Color = RED, *, seed: int = 20
) -> Path:
    """A real HEIC photo (the iPhone's default format), encoded with pillow-heif."""
    import pillow_heif

    heif = pillow_heif.from_pillow(picture(size, color, seed=seed))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heif.save(path, quality=90)
    return path


def write_huge_jpeg(path: str | os.PathLike[str], size: tuple[int, int] = HUGE_SIZE) -> Path:
    """A big JPEG (default 9000x7000, 63 megapixels) that stays small on disk: flat colour with a green band."""
    width, height = size
    image = Image.new("RGB", size, RED)
    ImageDraw.Draw(image).rectangle((0, height // 2, width - 1, height - 1), fill=GREEN)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, "JPEG", quality=75)
    return target


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def write_decompression_bomb_png(path: str | os.PathLike[str], side: int = 30000) -> Path:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (900 megapixels by default).

    Pillow refuses to open it (:class:`PIL.Image.DecompressionBombError`), which is exactly what a
    decompression bomb should cause; the file itself is a few hundred bytes.
    """
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    row = b"\x00" + b"\x00" * side
    data = _png_chunk(b"IDAT", zlib.compress(row * 4, 9))
    return write_bytes(path, b"\x89PNG\r\n\x1a\n" + header + data + _png_chunk(b"IEND", b""))


HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Image not found</title></head>\n"
    b"<body><h1>403 Forbidden</h1><p>Hot-linking is not allowed.</p></body></html>\n"
)


# --------------------------------------------------------------------------------------------- the folder


def _symlink(link: Path, target: str) -> bool:
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    except (OSError, NotImplementedError):  # e.g. Windows without developer mode
        return False
    return True


def _real_photos(mirror: Path | None, count: int) -> list[Path]:
    if mirror is None:
        return []
    folder = Path(mirror) / "datasets" / "flower_photos_small" / "train" / "daisy"
    if not folder.is_dir():
        folder = Path(mirror) / "train" / "daisy"
    return sorted(folder.glob("*.jpg"))[:count] if folder.is_dir() else []


def make_bad_folder(
    root: str | os.PathLike[str],
    *,
    huge: bool = True,
    symlinks: bool = True,
    mirror: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Build a ``train/`` + ``validation/`` image folder with every bad-input case; return the expected outcome.

    Classes: ``cats`` (valid photos plus every odd-but-usable and every broken file), ``dogs`` (valid photos,
    a duplicate within train, a symlink loop and a symlink to a cat), ``empty_class`` (no images: only a
    ``.DS_Store``) and ``solo`` (one image: excluded at the default ``min_per_class=2``). A symlink to a
    file OUTSIDE ``root`` is planted in ``train/cats``; its target lives in ``<root>_outside/``, beside
    ``root``. With ``huge=False`` the 9000x7000 JPEG is left out (saves ~0.3 s); with ``mirror`` (the asset
    mirror folder) a few real daisy photos are copied into ``train/cats`` too. Returns
    ``{relpath: outcome}``; see the module docstring for the outcome values.
    """
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def usable(relpath: str) -> Path:
        expected[relpath] = "usable"
        return base / relpath

    def problem(relpath: str, words: str) -> Path:
        expected[relpath] = f"problem: {words}"
        return base / relpath

    def ignored(relpath: str) -> Path:
        expected[relpath] = "ignored"
        return base / relpath

    # Valid photos, each distinct (different colour and noise seed).
    for index in range(4):
        write_jpeg(usable(f"train/cats/cat_{index:02d}.jpg"), (64, 48), RED, seed=index)
        write_jpeg(usable(f"train/dogs/dog_{index:02d}.jpg"), (48, 64), BLUE, seed=100 + index)
    for index in range(2):
        write_jpeg(usable(f"validation/cats/val_cat_{index:02d}.jpg"), (64, 48), RED, seed=200 + index)
        write_jpeg(usable(f"validation/dogs/val_dog_{index:02d}.jpg"), (48, 64), BLUE, seed=300 + index)
    for number, photo in enumerate(_real_photos(Path(mirror) if mirror else None, 3)):
        shutil.copyfile(photo, usable(f"train/cats/real_photo_{number}.jpg"))

    # Odd but decodable: all usable.
    cats = "train/cats"
    write_cmyk_jpeg(usable(f"{cats}/cmyk.jpg"))
    write_jpeg(usable(f"{cats}/grayscale.jpg"), (64, 48), (128, 128, 128), seed=11, mode="L")
    write_palette_png_with_transparency(usable(f"{cats}/palette_transparent.png"))
    write_16bit_png(usable(f"{cats}/sixteen_bit.png"))
    write_rgba_png(usable(f"{cats}/rgba.png"))
    write_bytes(usable(f"{cats}/png_named.jpg"), image_bytes(picture((50, 40), GREEN, seed=12), "PNG"))
    write_bytes(
        usable(f"{cats}/photo.webp"), image_bytes(picture((50, 40), RED, seed=13), "WEBP", quality=90)
    )
    write_bytes(usable(f"{cats}/photo.bmp"), image_bytes(picture((50, 40), RED, seed=14), "BMP"))
    write_animated_gif(usable(f"{cats}/animated.gif"))
    write_exif_rotated_jpeg(usable(f"{cats}/rotated_exif6.jpg"))
    write_heic(usable(f"{cats}/IMG_0042.HEIC"))  # an iPhone's own format
    write_png(usable(f"{cats}/tiny_1x1.png"), (1, 1), RED)
    write_jpeg(usable(f"{cats}/UPPER_CASE.JPG"), (40, 40), RED, seed=15)
    if huge:
        write_huge_jpeg(usable(f"{cats}/huge_9000x7000.jpg"))
    # Nested folders count for their class; odd names are just names.
    write_jpeg(usable(f"{cats}/nested/deeper/inner.jpg"), (40, 40), RED, seed=16)
    write_jpeg(usable(f"{cats}/with space and ünïcödé 猫.jpg"), (40, 40), RED, seed=17)
    write_jpeg(usable(f"{cats}/-leading-dash.jpg"), (40, 40), RED, seed=18)
    write_jpeg(usable(f"{cats}/semi;colon 'quote' $HOME.jpeg"), (40, 40), RED, seed=19)

    # Unusable: problems with a reason.
    write_bytes(problem(f"{cats}/empty.jpg", "empty file"), b"")
    write_bytes(
        problem(f"{cats}/corrupt.jpg", "not an image"),
        np.random.default_rng(3).bytes(3000).replace(b"\xff", b"\x00"),
    )
    write_truncated(problem(f"{cats}/truncated.jpg", "truncated"), "JPEG")
    write_truncated(problem(f"{cats}/truncated.png", "truncated"), "PNG")
    write_bytes(problem(f"{cats}/saved_page.jpg", "HTML"), HTML_PAGE)
    write_bytes(problem(f"{cats}/text.png", "text"), b"This is a note, not a picture.\n")
    write_decompression_bomb_png(problem(f"{cats}/bomb.png", "decompression bomb"))
    write_bytes(
        problem(f"{cats}/broken_iphone.heic", "corrupt image"), b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64
    )

    # Ignored: system files, AppleDouble, hidden/checkpoint folders, non-image files.
    write_bytes(ignored(".DS_Store"), b"\x00\x00\x00\x01Bud1" + b"\x00" * 32)
    write_bytes(ignored(f"{cats}/.DS_Store"), b"\x00\x00\x00\x01Bud1" + b"\x00" * 32)
    write_bytes(ignored(f"{cats}/Thumbs.db"), b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64)
    write_bytes(ignored(f"{cats}/desktop.ini"), b"[.ShellClassInfo]\r\n")
    write_bytes(ignored(f"{cats}/._cat_00.jpg"), b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    write_bytes(ignored(f"{cats}/notes.txt"), b"cats I photographed in May\n")
    write_bytes(ignored("README.md"), b"# my dataset\n")
    expected[f"{cats}/.ipynb_checkpoints/"] = "ignored"
    write_jpeg(base / cats / ".ipynb_checkpoints" / "cat_00-checkpoint.jpg", (64, 48), RED, seed=0)
    expected["__MACOSX/"] = "ignored"
    write_bytes(base / "__MACOSX" / "train" / "cats" / "._cat_01.jpg", b"\x00\x05\x16\x07")
    expected["train/.git/"] = "ignored"
    write_bytes(base / "train" / ".git" / "HEAD", b"ref: refs/heads/main\n")

    # Duplicates: within train (dogs) and across train/validation (cats).
    shutil.copyfile(base / DUPLICATE_WITHIN_SPLIT[0], usable(DUPLICATE_WITHIN_SPLIT[1]))
    shutil.copyfile(base / DUPLICATE_ACROSS_SPLITS[0], usable(DUPLICATE_ACROSS_SPLITS[1]))

    # An empty class (only a system file) and a one-image class.
    write_bytes(ignored("train/empty_class/.DS_Store"), b"\x00\x00\x00\x01Bud1")
    expected["train/solo/only_one.jpg"] = "excluded"
    write_jpeg(base / "train" / "solo" / "only_one.jpg", (40, 40), GREEN, seed=20)

    if symlinks:
        outside = base.parent / f"{base.name}_outside"
        write_jpeg(outside / "secret.jpg", (40, 40), GREEN, seed=21)
        if _symlink(base / cats / "outside_link.jpg", os.path.relpath(outside / "secret.jpg", base / cats)):
            expected[f"{cats}/outside_link.jpg"] = "problem: outside the folder"
        if _symlink(base / "train" / "dogs" / "link_to_cat.jpg", "../cats/nested/deeper/inner.jpg"):
            expected["train/dogs/link_to_cat.jpg"] = "usable"
        if _symlink(base / "train" / "dogs" / "loop", "."):
            expected["train/dogs/loop/"] = "ignored"
        if _symlink(base / "train" / "dogs" / "broken_link.jpg", "does_not_exist.jpg"):
            expected["train/dogs/broken_link.jpg"] = "problem: broken symlink"
    return expected


def snapshot(root: str | os.PathLike[str]) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under ``root`` (links not followed): relpath -> (kind, size, mtime_ns, sha256 or link target).

    Compare two snapshots to prove a folder was left byte-for-byte unchanged.
    """
    import hashlib

    base = Path(root)
    state: dict[str, tuple[str, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            relpath = path.relative_to(base).as_posix()
            if path.is_symlink():
                state[relpath] = ("link", 0, info.st_mtime_ns, os.readlink(path))
            elif path.is_dir():
                state[relpath] = ("dir", 0, info.st_mtime_ns, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[relpath] = ("file", info.st_size, info.st_mtime_ns, digest)
    return state
