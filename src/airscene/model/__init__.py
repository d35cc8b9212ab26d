"""AIR: spatial transformer, networks, priors, and the model itself."""

from airscene.model.air import AIR, Trace
from airscene.model.transformer import crop_glimpse, paste_glimpse, window_boxes

__all__ = ["AIR", "Trace", "crop_glimpse", "paste_glimpse", "window_boxes"]
