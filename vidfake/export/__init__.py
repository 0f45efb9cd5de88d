"""Export vidfake to BitMind SN34's model-submission format and score packages as its benchmark does.

    from vidfake.export import export_package, check_package, evaluate_package
    result = export_package("default", "out/vidfake-video", modality="video")   # folder + ZIP
    report = check_package(result.zip_path)                                      # static rules + isolated run
    scores = evaluate_package(result.folder, items)                              # gasbench-style metrics

The subnet (since mid-2025) does not query served miners for detection: miners submit a model package
(``model_config.yaml``, a self-contained ``model.py``, ``model.safetensors``) that validators run through
gasbench. :mod:`.package` writes and checks packages, :mod:`.static_check` applies the subnet's rules for
``model.py``, :mod:`.feed` reproduces how gasbench feeds media, :mod:`.evaluate` scores a package.
"""

from vidfake.export.evaluate import evaluate_package
from vidfake.export.feed import gasbench_image, gasbench_resize, gasbench_video
from vidfake.export.package import (
    CheckReport,
    ExportResult,
    PackageError,
    check_package,
    export_package,
    load_package_model,
    read_package_config,
    update_model_card,
    validate_package_config,
)
from vidfake.export.static_check import Violation, check_model_source

__all__ = [
    "CheckReport",
    "ExportResult",
    "PackageError",
    "Violation",
    "check_model_source",
    "check_package",
    "evaluate_package",
    "export_package",
    "gasbench_image",
    "gasbench_resize",
    "gasbench_video",
    "load_package_model",
    "read_package_config",
    "update_model_card",
    "validate_package_config",
]
