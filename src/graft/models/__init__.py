"""What the network is: loading from any source, the backbone contract, the zoo, safe checkpoints."""

from graft.models.backbone import Backbone, BackboneSpec, BlockSpec, HeadSpec, InputSpec, describe
from graft.models.checkpoint import Checkpoint, read_checkpoint
from graft.models.loading import build_architecture, load_network
from graft.models.options import LoadOptions
from graft.models.weights import LoadReport, load_weights
from graft.models.zoo import ZOO

__all__ = ["Backbone", "BackboneSpec", "BlockSpec", "Checkpoint", "HeadSpec", "InputSpec", "LoadReport", "ZOO",
           "LoadOptions", "build_architecture", "describe", "load_network", "load_weights", "read_checkpoint"]
