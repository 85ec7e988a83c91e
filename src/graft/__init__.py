"""graft: take a trained network to a new dataset. Measure, decide, adapt, and show the evidence.

The public verbs::

    import graft
    backbone = graft.load_model("cifar_resnet56", weights="resnet56.th")
    plan = graft.plan_surgery(backbone, num_classes=15, in_chans=1, input_size=(28, 28))
    print(plan)
    new = plan.apply(backbone)
    graft.save_model(new, "runs/x/model.safetensors")

Every name below is imported when first used (PEP 562), so ``import graft`` and ``graft --version`` stay fast:
torch is loaded by the first verb that needs it, not by the package.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("advise", "audit", "compare", "describe_data", "describe_model", "export_run", "extract_features",
                     "fine_tune", "load_data", "load_model", "load_run", "plan_surgery", "predict", "preprocessing",
                     "pretrain", "probe", "save_model", "target_from_data", "write_report"), "graft.api"),
    **dict.fromkeys(("AudioFeatures", "Data", "DatasetSpec", "DataOptions", "windows"), "graft.data"),
    "GraftError": "graft.errors",
    "FeatureSet": "graft.features",
    **dict.fromkeys(("Backbone", "BackboneSpec", "LoadOptions", "LoadReport", "load_weights", "read_checkpoint"),
                    "graft.models"),
    **dict.fromkeys(("SurgeryPlan", "Target", "apply_surgery"), "graft.surgery"),
    **dict.fromkeys(("Strategy", "parse_strategy", "registered_strategies", "register_strategy"), "graft.strategy"),
    **dict.fromkeys(("Workflow",), "graft.workflow"),
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graft' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return __all__
