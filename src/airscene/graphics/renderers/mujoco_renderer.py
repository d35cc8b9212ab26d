"""The MuJoCo backend: headless OpenGL (EGL, else OSMesa), one MuJoCo scene per process, batches split
across `spawn` worker processes. Measured pitfalls, each handled here: shadows are off (llvmpipe draws a
4096^2 shadow map per frame: 40 ms instead of 0.1 ms); the table is a thin box, not a plane (a plane's
render grid makes every frame slower); Mesa's own threads are off (LP_NUM_THREADS=0: parallelism comes
from processes); 4x multisampling, so that a quarter-pixel move changes the image smoothly."""

from __future__ import annotations

import math
import multiprocessing
import os

import numpy as np
import torch

from airscene.errors import AirsceneError
from airscene.graphics.renderers.base import Renderer
from airscene.graphics.scenes import SHAPES, TABLE_COLOUR, TABLE_HALF_SIZE, SceneParameters

FIELD_OF_VIEW = 45  # degrees, vertical
HIDDEN = (0.0, 0.0, 50.0)  # unused object bodies wait high above, behind the camera looking down


def _configure_environment() -> None:
    os.environ.setdefault("LP_NUM_THREADS", "0")
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl" if _egl_available() else "osmesa"


def _egl_available() -> bool:
    import ctypes.util
    return ctypes.util.find_library("EGL") is not None


def load_mujoco():
    """The mujoco module, set up to render headless; a one-line error where it is not installed."""
    _configure_environment()
    try:
        import mujoco
    except ImportError:
        raise AirsceneError("the mujoco package is missing: run `bash scripts/setup-venv.sh` "
                            "(or `pip install mujoco`)") from None
    return mujoco


def offscreen_renderer(mujoco, model, size: int):
    """A size x size offscreen renderer of `model`; a one-line error where there is no headless OpenGL."""
    try:
        return mujoco.Renderer(model, size, size)
    except Exception as error:  # no OpenGL: MuJoCo raises its own types
        raise AirsceneError(f"MuJoCo cannot render headless ({error}): install libegl1 libegl-mesa0 "
                            "libgl1-mesa-dri (or libosmesa6 and set MUJOCO_GL=osmesa)") from None


def free_camera(mujoco, distance: float, elevation: float, azimuth: float):
    """A free camera looking at the origin from `distance`, at `elevation` and `azimuth` (degrees)."""
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.lookat[:] = 0
    camera.distance, camera.elevation, camera.azimuth = distance, elevation, azimuth
    return camera


def headless_visual(size: int, field_of_view: float, ambient: float, diffuse: float) -> str:
    """The <visual> block of a scene rendered offscreen at size x size: no shadows (llvmpipe's shadow map is
    what makes a frame slow), 4x multisampling, and a headlight of that ambient and diffuse grey."""
    return f"""<visual>
    <global offwidth="{size}" offheight="{size}" fovy="{field_of_view}"/>
    <quality shadowsize="0" offsamples="4"/>
    <headlight ambient="{ambient} {ambient} {ambient}" diffuse="{diffuse} {diffuse} {diffuse}" specular="0 0 0"/>
  </visual>"""


def scene_xml(shapes: tuple[str, ...], slots: int, image_size: int) -> str:
    """MJCF for a table and, for every slot, one mocap body per identity (only the chosen one is placed)."""
    bodies = []
    for slot in range(slots):
        for shape in shapes:
            geoms = "".join(
                f'<geom type="{kind}" size="{" ".join(map(str, size))}" pos="{" ".join(map(str, offset))}" '
                f'rgba="{" ".join(map(str, colour))} 1"/>' for kind, size, offset, colour in SHAPES[shape].geoms)
            bodies.append(f'<body name="{shape}{slot}" mocap="true" pos="{" ".join(map(str, HIDDEN))}">{geoms}</body>')
    return f"""<mujoco>
  <statistic center="0 0 0" extent="2"/>
  {headless_visual(image_size, FIELD_OF_VIEW, ambient=0.5, diffuse=0.5)}
  <worldbody>
    <light directional="true" dir="0.3 0.4 -1" diffuse="0.5 0.5 0.5" specular="0 0 0" castshadow="false"/>
    <geom type="box" size="{TABLE_HALF_SIZE} {TABLE_HALF_SIZE} 0.02" pos="0 0 -0.02" rgba="{" ".join(map(str, TABLE_COLOUR))} 1"/>
    {"".join(bodies)}
  </worldbody>
</mujoco>"""


class _MujocoScene:
    """One process's MuJoCo model, data and offscreen renderer."""

    def __init__(self, shapes: tuple[str, ...], slots: int, image_size: int, camera: tuple[float, float, float]):
        self.mujoco = mujoco = load_mujoco()
        self.model = mujoco.MjModel.from_xml_string(scene_xml(shapes, slots, image_size))
        self.data = mujoco.MjData(self.model)
        self.renderer = offscreen_renderer(mujoco, self.model, image_size)
        self.camera, self.azimuth = free_camera(mujoco, *camera), camera[2]
        # each body's mocap index, by (slot, identity)
        self.mocap = np.array([[self.model.body_mocapid[self.model.body(f"{shape}{slot}").id] for shape in shapes]
                               for slot in range(slots)])

    def render(self, identity: np.ndarray, present: np.ndarray, pose: np.ndarray, camera: np.ndarray) -> np.ndarray:
        images = np.empty((len(identity), self.renderer.height, self.renderer.width, 3), np.uint8)
        for index in range(len(identity)):
            self.data.mocap_pos[:] = HIDDEN
            for slot in np.flatnonzero(present[index]):
                x, y, yaw = pose[index, slot]
                body = self.mocap[slot, identity[index, slot]]
                self.data.mocap_pos[body] = (x, y, 0.0)
                self.data.mocap_quat[body] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
            self.mujoco.mj_kinematics(self.model, self.data)
            self.camera.azimuth = self.azimuth + math.degrees(camera[index, 0])
            self.renderer.update_scene(self.data, camera=self.camera)
            images[index] = self.renderer.render()
        return images

    def close(self) -> None:
        self.renderer.close()


_WORKER: _MujocoScene | None = None


def _start_worker(*arguments) -> None:
    global _WORKER
    _WORKER = _MujocoScene(*arguments)


def _render_in_worker(arrays: tuple[np.ndarray, ...]) -> np.ndarray:
    return _WORKER.render(*arrays)


class MujocoRenderer(Renderer):
    """MuJoCo renders of the scene through a perspective camera on a circle about the table's centre:
    `camera` is (distance, elevation in degrees, azimuth in degrees), and a scene's camera parameter
    turns the azimuth. Every position the network can propose is in view: an object the camera could
    half hide at the image's edge is one the network learns to push out of sight instead of finding.
    `workers` > 0 renders in that many processes."""

    def __init__(self, shapes: tuple[str, ...], slots: int, image_size: int = 32,
                 camera: tuple[float, float, float] = (2.1, -70.0, 90.0), workers: int = 0):
        pixel = 2 * camera[0] * math.tan(math.radians(FIELD_OF_VIEW / 2)) / image_size  # table units per pixel at the centre
        super().__init__(shapes, image_size, pixel=pixel, yaw_step=0.08, camera_step=0.02)
        self.slots, self.pool, self.local, self.camera = slots, None, None, camera
        # Each shape's centre above the table (its first geom's), where `locate` aims.
        self.heights = torch.tensor([SHAPES[shape].geoms[0][2][2] for shape in shapes])
        arguments = (tuple(shapes), slots, image_size, tuple(camera))
        if workers > 0:
            self.pool = multiprocessing.get_context("spawn").Pool(workers, _start_worker, arguments)
            self.workers = workers
        else:
            self.local = _MujocoScene(*arguments)  # load_mujoco and offscreen_renderer say what is missing

    def render(self, scenes: SceneParameters) -> torch.Tensor:
        if scenes.identity.shape[1] > self.slots:
            raise AirsceneError(f"scenes have {scenes.identity.shape[1]} object slots but the renderer was built "
                                f"for {self.slots}: build it with slots >= {scenes.identity.shape[1]}")
        arrays = tuple(tensor.detach().cpu().numpy() for tensor in (scenes.identity, scenes.present, scenes.pose, scenes.camera))
        if self.pool is None:
            images = self.local.render(*arrays)
        else:
            chunks = [tuple(chunk) for chunk in zip(*(np.array_split(array, self.workers) for array in arrays))]
            images = np.concatenate(self.pool.map(_render_in_worker, chunks))
        return torch.from_numpy(images).to(scenes.pose.device).permute(0, 3, 1, 2).float().div_(255)

    def view_axes(self, camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 1) -> forward, up, right (B, 3) each: MuJoCo's free camera looks at the table's centre from
        `distance` along `forward`, with the vertical field of view set in scene_xml."""
        elevation = math.radians(self.camera[1])
        azimuth = math.radians(self.camera[2]) + camera[:, 0]  # (B,)
        forward = torch.stack([math.cos(elevation) * azimuth.cos(), math.cos(elevation) * azimuth.sin(),
                               torch.full_like(azimuth, math.sin(elevation))], 1)  # (B, 3)
        up = torch.stack([-math.sin(elevation) * azimuth.cos(), -math.sin(elevation) * azimuth.sin(),
                          torch.full_like(azimuth, math.cos(elevation))], 1)
        return forward, up, torch.linalg.cross(forward, up)

    def locate(self, identity: torch.Tensor, position: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """The perspective projection of the camera (`view_axes`)."""
        forward, up, right = self.view_axes(camera)
        centre = torch.cat([position, self.heights.to(position.device)[identity][:, None]], 1)  # (B, 3)
        seen = centre + self.camera[0] * forward  # from the camera, which is at -distance * forward
        depth = (seen * forward).sum(1) * math.tan(math.radians(FIELD_OF_VIEW / 2))
        return torch.stack([(seen * right).sum(1), -(seen * up).sum(1)], 1) / depth[:, None]

    def unproject(self, point: torch.Tensor, camera: torch.Tensor, height: torch.Tensor | None = None) -> torch.Tensor:
        """Where the camera's ray through `point` meets the plane of the objects' centres."""
        forward, up, right = self.view_axes(camera)
        if height is None:
            height = self.heights.mean().expand(len(point))
        spread = math.tan(math.radians(FIELD_OF_VIEW / 2))
        ray = forward + spread * (point[:, :1] * right - point[:, 1:] * up)  # (B, 3): seen = depth along it
        origin = -self.camera[0] * forward  # the camera
        along = (height.to(point.device) - origin[:, 2]) / ray[:, 2]  # (B,)
        return origin[:, :2] + along[:, None] * ray[:, :2]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None
        if self.local is not None:
            self.local.close()
            self.local = None
