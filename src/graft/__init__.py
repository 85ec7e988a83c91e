"""graft: take a trained network to a new dataset. Measure, decide, adapt, and show the evidence.

The public verbs::

    import graft
    backbone = graft.load_model("cifar_resnet56", weights="resnet56.th")
    plan = graft.plan_surgery(backbone, num_classes=15, in_chans=1, input_size=(28, 28))
    print(plan)
    new = plan.apply(backbone)
    graft.save_model(new, "runs/x/model.safetensors")
"""

__version__ = "0.1.0"

from graft.api import (  # noqa: E402
    describe_data,
    describe_model,
    extract_features,
    fine_tune,
    load_data,
    load_model,
    load_run,
    plan_surgery,
    predict,
    preprocessing,
    pretrain,
    probe,
    save_model,
    target_from_data,
)
from graft.data import AudioFeatures, Data, DatasetSpec, describe_dataset, windows  # noqa: E402
from graft.errors import GraftError  # noqa: E402
from graft.features import FeatureSet  # noqa: E402
from graft.models import Backbone, BackboneSpec, LoadReport, load_weights, read_checkpoint  # noqa: E402
from graft.surgery import SurgeryPlan, Target, apply_surgery  # noqa: E402

__all__ = ["AudioFeatures", "Backbone", "BackboneSpec", "Data", "DatasetSpec", "FeatureSet", "GraftError", "LoadReport",
           "SurgeryPlan", "Target", "__version__", "apply_surgery", "describe_data", "describe_dataset",
           "describe_model", "extract_features", "fine_tune", "load_data", "load_model", "load_run", "predict", "load_weights", "plan_surgery", "preprocessing", "pretrain", "probe",
           "read_checkpoint", "save_model", "target_from_data", "windows"]
