"""AIR: spatial transformer, networks, priors, the shared recurrence, the model itself, and the grid model."""

from airscene.config import ModelConfig
from airscene.model.air import AIR, AttendInferRepeat, GlimpseTrace
from airscene.model.grid import GridAIR, GridTrace
from airscene.model.interface import SceneModel
from airscene.model.trace import Trace
from airscene.model.transformer import crop_glimpse, paste_glimpse, window_boxes


MODELS = {"air": AIR, "dair": AIR, "grid": GridAIR}  # config.model -> its class (DAIR is AIR reading its error)


def model_class(name: str) -> type:
    """The class of the model `name` (ModelConfig.model): what it declares (estimators, input_size, ...)."""
    return MODELS[name]


def make_model(config: ModelConfig) -> SceneModel:
    """The model config.model names: AIR or DAIR (one recurrent step per object) or the grid."""
    return model_class(config.model)(config)


__all__ = ["AIR", "AttendInferRepeat", "GlimpseTrace", "GridAIR", "GridTrace", "SceneModel", "Trace", "crop_glimpse",
           "make_model", "model_class", "paste_glimpse", "window_boxes"]
