"""AIR: spatial transformer, networks, priors, the shared recurrence and the model itself."""

from airscene.model.air import AIR, AttendInferRepeat, GlimpseTrace
from airscene.model.trace import Trace
from airscene.model.transformer import crop_glimpse, paste_glimpse, window_boxes

__all__ = ["AIR", "AttendInferRepeat", "GlimpseTrace", "Trace", "crop_glimpse", "paste_glimpse", "window_boxes"]
