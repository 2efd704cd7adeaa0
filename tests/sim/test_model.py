"""The MuJoCo model agrees with the URDF, and the URDF in the repo is the generated one."""

import numpy as np
import pytest

from lwd_description import g1_kinematics as robot_description
from lwd_description.robot import JOINT_NAMES, PACKAGE_URDF_DIR, URDF_FILENAME, load_joint_limits
from lwd_sim.sim import G1Sim, SimConfig, urdf_limits_match_model


def test_urdf_file_is_the_generated_description():
    assert (PACKAGE_URDF_DIR / URDF_FILENAME).read_text() == robot_description.urdf_text()


def test_urdf_has_every_controlled_joint_with_full_limits():
    limits = load_joint_limits()
    assert limits.names == JOINT_NAMES
    assert (limits.effort > 0).all() and (limits.velocity > 0).all()
    assert limits.upper[14:] == pytest.approx([0.08, 0.08]) and limits.lower[14:] == pytest.approx([0, 0])


def test_mujoco_joint_and_actuator_limits_match_the_urdf(sim):
    ok, why = urdf_limits_match_model(sim)
    assert ok, why


def test_model_with_different_limits_is_detected(sim, tmp_path):
    text = robot_description.urdf_text().replace('lower="-2.6"', 'lower="-2.0"', 1)
    path = tmp_path / "g1.urdf"
    path.write_text(text)
    ok, _ = urdf_limits_match_model(sim, path)
    assert not ok


def test_render_shapes_follow_the_configured_resolution(sim):
    images = sim.render()
    assert images.shape == (3, 32, 40, 3) and images.dtype == np.uint8
    assert images.std() > 5  # a scene, not a blank frame


def test_too_small_images_are_refused():
    with pytest.raises(ValueError, match="at least 8x8"):
        G1Sim(SimConfig(image_height=4, image_width=4))


def test_commands_are_clipped_to_limits_and_rate_limited(sim):
    from lwd_sim.tasks import home_pose

    sim.reset(home_pose(), {})
    target = home_pose().copy()
    target[0] = 100.0
    sim.apply(target)
    assert sim.command[0] - home_pose()[0] == pytest.approx(3.0 / 30, abs=1e-9)
    for _ in range(90):
        sim.apply(target)
    assert sim.command[0] == pytest.approx(load_joint_limits().upper[0])


def test_bad_commands_raise_clear_errors(sim):
    with pytest.raises(ValueError, match="16 joint targets"):
        sim.apply(np.zeros(7))
    with pytest.raises(ValueError, match="NaN"):
        sim.apply(np.full(16, np.nan))


def test_gripper_joint_reports_finger_opening(sim):
    from lwd_sim.tasks import home_pose

    q = home_pose().copy()
    sim.reset(q, {})
    q[14] = 0.02
    for _ in range(30):
        sim.apply(q)
    assert sim.joint_positions()[14] == pytest.approx(0.02, abs=3e-3)
    assert sim.joint_positions()[15] == pytest.approx(0.08, abs=3e-3)


def test_a_mirror_reproduces_another_sims_scene(sim):
    from lwd_sim.tasks import get_task

    inst = get_task("grocery_pick_place").sample(np.random.default_rng(0))
    inst.reset_sim(sim)
    mirror = G1Sim(SimConfig(16, 16))
    try:
        mirror.mirror(sim.data.qpos.copy(), sim.command, {"left": "red_can"})
        assert mirror.tcp_pose("left")[0] == pytest.approx(sim.tcp_pose("left")[0], abs=1e-4)
        assert mirror.body_pos(inst.target_items[0]) == pytest.approx(
            sim.body_pos(inst.target_items[0]), abs=1e-4
        )
        assert mirror.held == {"left": "red_can", "right": None}
        with pytest.raises(ValueError, match="nq"):
            mirror.mirror(np.zeros(3), sim.command, {})
    finally:
        mirror.close()
