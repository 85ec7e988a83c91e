"""What changes in the network: plan first (``plan_surgery``), apply second (``SurgeryPlan.apply``)."""

from graft.models.weights import LoadReport, load_weights
from graft.surgery.modules import GraftedNet, LearnedInputAdapter, PadCrop, Resize, SpatialPoolLinear
from graft.surgery.plan import Step, SurgeryPlan, Target, TensorChange
from graft.surgery.execute import apply_surgery
from graft.surgery.planner import plan_surgery
from graft.surgery.saving import load_model, save_model

__all__ = ["GraftedNet", "LearnedInputAdapter", "LoadReport", "PadCrop", "Resize", "SpatialPoolLinear", "Step",
           "SurgeryPlan", "Target", "TensorChange", "apply_surgery", "load_model", "load_weights", "plan_surgery", "save_model"]
