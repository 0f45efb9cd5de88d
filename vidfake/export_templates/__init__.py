"""Source templates for files that ``vidfake export`` writes into subnet model packages.

``gasbench_model.py`` becomes a package's ``model.py``: it must stay self-contained (no vidfake import)
and pass the subnet's static rules (:mod:`vidfake.export.static_check`). The exporter replaces the block
between ``# <vidfake-arch>`` and ``# </vidfake-arch>`` with the exported detector's architecture; the
template's own block describes the tiny test variants, so the file is a valid ``model.py`` as it is.
"""

from __future__ import annotations

from importlib import resources

TEMPLATE_PACKAGE = "vidfake.export_templates"
MODEL_TEMPLATE = "gasbench_model.py"
ARCH_BEGIN = "# <vidfake-arch>"
ARCH_END = "# </vidfake-arch>"


def model_template() -> str:
    """The text of the ``model.py`` template."""
    return (resources.files(TEMPLATE_PACKAGE) / MODEL_TEMPLATE).read_text(encoding="utf-8")
