"""Reading benchmark folders in every BMAD layout (and MVTec AD's), one domain per folder.

Masks are matched to images by file stem (``img.png`` ↔ ``img.png`` / ``img_mask.png``);
pixel metrics are computed only where real masks exist, never on invented ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".nii", ".gz"}


@dataclass
class Sample:
    path: Path
    label: int                 # 0 normal, 1 anomalous
    mask: Path | None = None   # ground-truth mask, where the dataset has one


@dataclass
class DomainData:
    name: str
    layout: str
    train: list[Path]
    valid: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        return any(s.mask is not None for s in self.test if s.label == 1)

    def summary(self) -> dict:
        return dict(layout=self.layout, train=len(self.train), valid_normal=sum(s.label == 0 for s in self.valid),
                    test_normal=sum(s.label == 0 for s in self.test), test_anomalous=sum(s.label for s in self.test),
                    pixel_masks=self.has_masks)


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and (p.suffix.lower() in IMAGE_EXT))


def _stem(p: Path) -> str:
    name = p.name
    for ext in (".nii.gz",):
        if name.endswith(ext):
            return name[: -len(ext)]
    s = p.stem
    return s[:-5] if s.endswith("_mask") else s


def _with_masks(images: list[Path], mask_dirs: list[Path]) -> list[Sample]:
    masks = {}
    for d in mask_dirs:
        for m in _images(d):
            masks.setdefault(_stem(m), m)
    return [Sample(p, 1, masks.get(_stem(p))) for p in images]


def _first_dir(root: Path, *names: str) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def detect_layout(root: Path) -> str:
    root = Path(root)
    if (root / "Train" / "train" / "good").is_dir():
        return "resc"
    if (root / "test" / "img").is_dir() or (root / "valid" / "img").is_dir():
        return "liver"
    if (root / "test" / "Ungood" / "img").is_dir() or (root / "valid" / "Ungood" / "img").is_dir():
        return "brain"
    if (root / "ground_truth").is_dir():
        return "mvtec"
    if (root / "test" / "Ungood").is_dir() and (root / "train" / "good").is_dir():
        return "image_labels"
    if (root / "train" / "good").is_dir() and (root / "test").is_dir():
        return "mvtec"
    raise ValueError(f"{root.name}: no known benchmark layout (BMAD brain / liver / RESC / image-label, or MVTec)")


def read_domain(root: Path) -> DomainData:
    root = Path(root)
    layout = detect_layout(root)
    if layout == "brain":
        def split(name):
            d = root / name
            if not d.is_dir():
                return []
            return [Sample(p, 0) for p in _images(d / "good")] + _with_masks(
                _images(d / "Ungood" / "img"), [d / "Ungood" / "label", d / "Ungood" / "anomaly_mask"])
        return DomainData(root.name, layout, _images(root / "train" / "good"), split("valid"), split("test"))
    if layout == "liver":
        def split(name):
            d = root / name
            if not d.is_dir():
                return []
            return [Sample(p, 0) for p in _images(d / "img" / "good")] + _with_masks(
                _images(d / "img" / "Ungood"), [d / "label" / "Ungood", d / "anomaly_mask" / "Ungood"])
        return DomainData(root.name, layout, _images(root / "train" / "good"), split("valid"), split("test"))
    if layout == "resc":
        def split(outer, inner):
            d = root / outer / inner
            if not d.is_dir():
                return []
            return [Sample(p, 0) for p in _images(d / "good")] + _with_masks(
                _images(d / "Ungood"), [root / outer / f"{inner}_label" / "Ungood"])
        return DomainData(root.name, layout, _images(root / "Train" / "train" / "good"), split("Val", "val"),
                          split("Test", "test"))
    if layout == "image_labels":
        def split(*names):
            d = _first_dir(root, *names)
            if d is None:
                return []
            return [Sample(p, 0) for p in _images(d / "good")] + [Sample(p, 1) for p in _images(d / "Ungood")]
        return DomainData(root.name, layout, _images(root / "train" / "good"), split("valid", "val"), split("test"))
    # MVTec AD: test/good, test/<defect>/, ground_truth/<defect>/<stem>_mask.png
    test = [Sample(p, 0) for p in _images(root / "test" / "good")]
    for d in sorted(p for p in (root / "test").iterdir() if p.is_dir() and p.name != "good"):
        test += _with_masks(_images(d), [root / "ground_truth" / d.name])
    valid_dir = _first_dir(root, "validation", "valid", "val")
    valid = [Sample(p, 0) for p in _images(valid_dir / "good")] if valid_dir else []
    return DomainData(root.name, layout, _images(root / "train" / "good"), valid, test)


def read_benchmark(root: Path, order: list[str] | None = None) -> list[DomainData]:
    root = Path(root)
    names = order or sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        raise ValueError(f"no domain folder for: {', '.join(missing)}")
    domains = [read_domain(root / n) for n in names]
    for d in domains:
        if len(d.train) < 2:
            raise ValueError(f"{d.name}: fewer than 2 normal training images")
        if not any(s.label == 1 for s in d.test) or not any(s.label == 0 for s in d.test):
            raise ValueError(f"{d.name}: the test split needs both normal and anomalous images")
    return domains
