"""PatchCoreCL: continual visual anomaly detection on medical images (engine, no UI)."""
__version__ = "0.1.0"

from .continual import EnrollmentError, PatchCoreCL, ScoreResult  # noqa: E402
from .io import Scan, ScanError, load_cohort, load_scan  # noqa: E402

__all__ = ["PatchCoreCL", "ScoreResult", "EnrollmentError", "Scan", "ScanError", "load_scan", "load_cohort",
           "__version__"]
