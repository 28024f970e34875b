"""The network. Importing this package registers every model component (explicitly, in one place)."""

from llm.model import attention, block, mlp, norm, positions  # noqa: F401  (registers the components)
from llm.model.attention import ATTENTIONS
from llm.model.block import BLOCKS
from llm.model.config import ModelConfig, ModelConfigError, Part
from llm.model.gpt import GPT, build_gpt
from llm.model.mlp import MLPS
from llm.model.norm import NORMS
from llm.model.positions import POSITIONS

# config group (conf/model/<group>/) -> registry of that group's components
MODEL_PARTS = {"position": POSITIONS, "attention": ATTENTIONS, "norm": NORMS, "mlp": MLPS, "block": BLOCKS}

__all__ = ["GPT", "MODEL_PARTS", "ModelConfig", "ModelConfigError", "Part", "build_gpt"]
