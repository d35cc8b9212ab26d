"""airscene: Attend, Infer, Repeat (Eslami et al. 2016): learn without labels to count, locate and describe
the objects in images."""

from airscene.config import Config, ModelConfig, TrainConfig
from airscene.errors import AirsceneError
from airscene.infer import Scenes, TrainedModel, load

__version__ = "0.1.0"
__all__ = ["AirsceneError", "Config", "ModelConfig", "Scenes", "TrainConfig", "TrainedModel", "load"]
