import pytest

from lwd_sim.sim import G1Sim, SimConfig


@pytest.fixture
def sim():
    s = G1Sim(SimConfig(image_height=32, image_width=40))
    yield s
    s.close()
