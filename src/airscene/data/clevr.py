"""A look-alike of CLEVR (Johnson et al. 2017) as object-centric models use it (CLEVR6: 3-6 objects), rendered
by MuJoCo: cubes, spheres and cylinders, large or small, in CLEVR's 8 colours, matte rubber or shiny metal,
standing apart on a grey floor under a fixed camera. The true instance masks come from MuJoCo's segmentation
render of the same scene, so occlusion is resolved by the depth buffer, as the picture resolves it. Unlike
CLEVR: no shadows (a software shadow map costs 40 ms a frame), no ray-traced reflections, no random light
jitter, and the picture is rendered square rather than cropped from 480 x 320."""

from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm

from airscene.data.scenes import PLACEMENT_ATTEMPTS, SceneSet, _labelled_scene_set, check_counts
from airscene.errors import AirsceneError
from airscene.graphics.renderers.mujoco_renderer import free_camera, headless_visual, load_mujoco, offscreen_renderer

SHAPES = ("cube", "sphere", "cylinder")
SIZES = (0.7, 0.35)  # large and small: the radius of a sphere, the half-side of a cube, a cylinder's radius and half-height
COLOURS = {  # CLEVR's palette, RGB in [0, 1]
    "grey": (0.34, 0.34, 0.34), "red": (0.68, 0.13, 0.13), "blue": (0.16, 0.29, 0.84), "green": (0.11, 0.41, 0.08),
    "brown": (0.51, 0.29, 0.1), "purple": (0.51, 0.15, 0.75), "cyan": (0.16, 0.82, 0.82), "yellow": (1.0, 0.93, 0.2)}
FLOOR_HALF_SIZE = 40.0
SPREAD = 3.0  # object centres lie in [-SPREAD, SPREAD]^2 on the floor, as CLEVR's
GAP = 0.1  # at least this much floor between two objects
CAMERA = (12.5, -40.0, 135.0)  # distance, elevation and azimuth (degrees) of the fixed camera about the floor's centre
FIELD_OF_VIEW = 40  # degrees, vertical
MIN_PIXELS = 1 / 400  # each object shows at least this share of the picture (CLEVR: 200 of 480 x 320 pixels)
HIDDEN = (0.0, 0.0, -50.0)  # unused bodies wait under the floor


def scene_xml(slots: int, size: int) -> str:
    """MJCF: a floor and, for every slot, one mocap body per shape (only the chosen one is placed)."""
    geoms = {"cube": 'type="box" size="1 1 1"', "sphere": 'type="sphere" size="1"',
             "cylinder": 'type="cylinder" size="1 1"'}
    bodies = "".join(f'<body name="{shape}{slot}" mocap="true" pos="{" ".join(map(str, HIDDEN))}">'
                     f'<geom name="{shape}{slot}" {geoms[shape]} material="rubber"/></body>'
                     for slot in range(slots) for shape in SHAPES)
    return f"""<mujoco>
  {headless_visual(size, FIELD_OF_VIEW, ambient=0.45, diffuse=0.4)}
  <asset>
    <material name="rubber" specular="0" shininess="0"/>
    <material name="metal" specular="1" shininess="0.9"/>
  </asset>
  <worldbody>
    <light directional="true" dir="0.4 0.3 -1" diffuse="0.7 0.7 0.7" specular="0.4 0.4 0.4" castshadow="false"/>
    <geom type="box" size="{FLOOR_HALF_SIZE} {FLOOR_HALF_SIZE} 0.02" pos="0 0 -0.02" rgba="0.55 0.55 0.55 1" material="rubber"/>
    {bodies}
  </worldbody>
</mujoco>"""


class ClevrRenderer:
    """One MuJoCo scene of `slots` object slots, rendered in colour and as a segmentation."""

    def __init__(self, slots: int, size: int):
        self.mujoco = mujoco = load_mujoco()
        self.model = mujoco.MjModel.from_xml_string(scene_xml(slots, size))
        self.data = mujoco.MjData(self.model)
        # one renderer for the colour picture, one for the segmentation: switching one costs 4 ms a scene
        self.renderer, self.segmenter = offscreen_renderer(mujoco, self.model, size), offscreen_renderer(mujoco, self.model, size)
        self.segmenter.enable_segmentation_rendering()
        self.camera = free_camera(mujoco, *CAMERA)
        self.body = {(slot, shape): self.model.body(f"{shape}{slot}").mocapid[0]
                     for slot in range(slots) for shape in SHAPES}
        self.geom = {(slot, shape): self.model.geom(f"{shape}{slot}").id for slot in range(slots) for shape in SHAPES}
        self.materials = (self.model.material("rubber").id, self.model.material("metal").id)

    def render(self, objects: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """The picture (H, W, 3) uint8 and the label map (H, W) uint8 (k: objects[k - 1], 0: the floor)."""
        self.data.mocap_pos[:] = HIDDEN
        owner = {}
        for slot, thing in enumerate(objects):
            shape, radius = SHAPES[thing["shape"]], SIZES[thing["size"]]
            geom, body = self.geom[slot, shape], self.body[slot, shape]
            self.model.geom_size[geom] = (radius, radius, radius)
            self.model.geom_rgba[geom] = (*list(COLOURS.values())[thing["colour"]], 1.0)
            self.model.geom_matid[geom] = self.materials[thing["material"]]
            self.data.mocap_pos[body] = (*thing["position"], radius)
            self.data.mocap_quat[body] = (math.cos(thing["yaw"] / 2), 0.0, 0.0, math.sin(thing["yaw"] / 2))
            owner[geom] = slot + 1
        self.mujoco.mj_kinematics(self.model, self.data)
        self.renderer.update_scene(self.data, camera=self.camera)
        self.segmenter.update_scene(self.data, camera=self.camera)
        picture, segments = self.renderer.render(), self.segmenter.render()[..., 0]  # segments: (H, W) geom ids, -1: none
        lookup = np.zeros(self.model.ngeom + 1, np.uint8)
        for geom, label in owner.items():
            lookup[geom + 1] = label
        return picture, lookup[segments + 1]

    def close(self) -> None:
        self.renderer.close()
        self.segmenter.close()


MAX_OBJECTS = 10  # CLEVR's own most


def check_clevr_counts(counts) -> tuple[int, ...]:
    counts = check_counts(counts)
    if max(counts) > MAX_OBJECTS:
        raise AirsceneError(f"--counts goes to {max(counts)}, but CLEVR scenes hold at most {MAX_OBJECTS} objects: give "
                            f"counts from 0 to {MAX_OBJECTS}, such as 3-6")
    return counts


def place_objects(rng: np.random.Generator, count: int) -> list[dict] | None:
    """`count` objects of random shape, size, colour, material and yaw, standing apart; None if they do not fit."""
    objects: list[dict] = []
    for _ in range(count):
        for _attempt in range(PLACEMENT_ATTEMPTS):
            size = int(rng.integers(len(SIZES)))
            position = rng.uniform(-SPREAD, SPREAD, size=2)
            reach = SIZES[size] * math.sqrt(2)  # a cube's corner
            if all(np.hypot(*(position - other["position"])) > reach + other["reach"] + GAP for other in objects):
                objects.append(dict(shape=int(rng.integers(len(SHAPES))), size=size, colour=int(rng.integers(len(COLOURS))),
                                    material=int(rng.integers(2)), position=position, yaw=rng.uniform(0, 2 * math.pi),
                                    reach=reach))
                break
        else:
            return None
    return objects


def clevr(number: int, counts: tuple[int, ...] = (3, 4, 5, 6), size: int = 64, seed: int = 0,
          progress: bool = True) -> SceneSet:
    """`number` CLEVR-like scenes of `size` x `size` with their instance masks; every object shows at least
    MIN_PIXELS of the picture. labels: the shape (0 cube, 1 sphere, 2 cylinder); boxes: of the visible part."""
    counts = check_clevr_counts(counts)
    rng = np.random.default_rng(seed)
    scenes = _labelled_scene_set(number, size, max(counts), 3)
    renderer = ClevrRenderer(max(counts), size)
    try:
        for index in tqdm(range(number), desc="clevr", unit="scene", disable=not progress, mininterval=0.5):
            count = int(rng.choice(counts))
            for _attempt in range(PLACEMENT_ATTEMPTS):
                objects = place_objects(rng, count)
                if objects is None:
                    continue
                picture, owner = renderer.render(objects)
                shown = np.bincount(owner.ravel(), minlength=count + 1)[1:]
                if (shown >= MIN_PIXELS * size * size).all():
                    break
            else:
                raise AirsceneError(f"cannot place {count} objects each in view on a {size}x{size} picture: lower "
                                    "--counts or raise --size")
            scenes.images[index], scenes.masks[index], scenes.counts[index] = picture, owner, count
            for slot, thing in enumerate(objects):
                rows, columns = np.nonzero(owner == slot + 1)
                scenes.boxes[index, slot] = (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)
                scenes.labels[index, slot] = thing["shape"]
    finally:
        renderer.close()
    return scenes
