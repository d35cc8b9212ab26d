import numpy as np
import pytest
import torch

from airscene.data.sources import ObjectPool


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)  # tests are small; one thread is faster and more repeatable on 2 cores


@pytest.fixture
def tiny_pool() -> ObjectPool:
    """Twenty 28x28 'digits': filled rectangles of varied size, labels 0-9."""
    rng = np.random.default_rng(0)
    images = np.zeros((20, 28, 28), np.uint8)
    for index in range(20):
        height, width = rng.integers(8, 21, size=2)
        top, left = (28 - height) // 2, (28 - width) // 2
        images[index, top:top + height, left:left + width] = 255
    return ObjectPool(images=images, labels=np.arange(20) % 10)


@pytest.fixture(scope="session")
def mujoco():
    """Skips a test where MuJoCo cannot render headless (no EGL or OSMesa), saying why."""
    from airscene.errors import AirsceneError
    from airscene.graphics.renderers import MujocoRenderer
    from airscene.graphics.scenes import SINGLE_OBJECTS, sample_scenes

    try:
        with MujocoRenderer(SINGLE_OBJECTS, 1, 16) as renderer:
            renderer.render(sample_scenes(1, 3, 1, (1,), True, False, seed=0))
    except AirsceneError as error:
        pytest.skip(f"MuJoCo cannot render here: {error}")
