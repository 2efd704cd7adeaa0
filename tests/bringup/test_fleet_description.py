"""The fleet description expands to the nodes, namespaces and parameters both launch paths start."""

import pytest

from lwd_actor.bringup.description import (
    FleetConfigError,
    command_line,
    default_fleet_file,
    expand_fleet,
    load_fleet_yaml,
    parse_set,
    real_robots,
    ros_params_file_content,
)


def test_default_fleet_is_simulated_with_bridge_and_learner():
    fleet = expand_fleet(load_fleet_yaml(default_fleet_file()))
    assert fleet.mode == "sim"
    names = [p.name for p in fleet.processes]
    assert names[:2] == ["bridge", "learner"]
    for rid in fleet.robot_ids:
        assert {f"{rid}.actor", f"{rid}.sim_robot", f"{rid}.sim_operator"} <= set(names)


def test_the_dashboard_is_on_by_default_on_loopback_reading_the_runs_store():
    fleet = expand_fleet(load_fleet_yaml(default_fleet_file()), {"run_dir": "runs/x"})
    args = fleet.by_name("dashboard").args
    assert args[args.index("--bind") + 1] == "127.0.0.1:8765"
    assert (
        args[args.index("--run-dir") + 1] == "runs/x"
        and args[args.index("--bridge-root") + 1] == "runs/x/bridge"
    )
    s3 = expand_fleet(load_fleet_yaml(default_fleet_file()), {"data_plane": "s3-queue"}).by_name("dashboard")
    assert s3.args[s3.args.index("--store") + 1] == "s3://lwd/fleet" and "AWS_ACCESS_KEY_ID" in s3.env
    off = expand_fleet(load_fleet_yaml(default_fleet_file()), {"dashboard": {"enabled": False}})
    assert "dashboard" not in [p.name for p in off.processes]


def test_the_fleet_prints_the_url_the_dashboard_logged_this_run(tmp_path):
    from lwd_actor.bringup.main import dashboard_url

    log = tmp_path / "dashboard.log"
    assert dashboard_url(log) == ""
    log.write_text("lwd dashboard: http://127.0.0.1:8765/#token=old\n")
    offset = log.stat().st_size  # a new run starts here
    assert dashboard_url(log, offset) == ""
    with log.open("a") as f:
        f.write("INFO started\nlwd dashboard: http://127.0.0.1:8765/#token=abc\n")
    assert dashboard_url(log, offset) == "http://127.0.0.1:8765/#token=abc"


def test_the_learner_gets_time_to_checkpoint_on_shutdown_and_nodes_the_default():
    fleet = expand_fleet(load_fleet_yaml(default_fleet_file()))
    grace = {p.name: p.shutdown_grace_s for p in fleet.processes}
    assert grace["learner"] == 60.0 and grace["bridge"] is None and grace["robot0.actor"] is None
    custom = expand_fleet({"learner": {"enabled": True, "shutdown_grace_s": 120}})
    assert [p.shutdown_grace_s for p in custom.processes if p.name == "learner"] == [120.0]


def test_each_robot_gets_its_own_namespace_and_robot_id():
    fleet = expand_fleet({"num_robots": 3, "bridge": {"enabled": False}})
    actors = [p for p in fleet.processes if p.node_name == "actor"]
    assert [a.namespace for a in actors] == ["/robot0", "/robot1", "/robot2"]
    assert [a.parameters["robot_id"] for a in actors] == ["robot0", "robot1", "robot2"]
    assert [a.fully_qualified_name for a in actors] == ["/robot0/actor", "/robot1/actor", "/robot2/actor"]


def test_per_robot_parameters_override_fleet_defaults():
    fleet = expand_fleet(
        {
            "robots": [{"id": "a", "params": {"actor": {"jpeg_quality": 95}}}, {"id": "b"}],
            "actor_params": {"jpeg_quality": 80, "episode_time_limit_s": 20.0},
        }
    )
    a, b = fleet.by_name("a.actor"), fleet.by_name("b.actor")
    assert a.parameters["jpeg_quality"] == 95 and b.parameters["jpeg_quality"] == 80
    assert a.parameters["episode_time_limit_s"] == 20.0


def test_real_mode_starts_no_simulator():
    fleet = expand_fleet({"mode": "real", "num_robots": 2})
    assert not [p for p in fleet.processes if p.package == "lwd_sim"]


def test_a_real_mode_launch_drives_one_robot_robot0_by_default_not_the_simulated_fleets_two():
    assert real_robots({"mode": "real", "num_robots": 2}) == [{"id": "robot0"}]


def test_a_real_mode_launch_takes_its_robot_from_the_fleet_files_list_by_id():
    cfg = {"robots": [{"id": "a", "remappings": {"x": "/a/x"}}, {"id": "b"}]}
    assert real_robots(cfg, "a") == [{"id": "a", "remappings": {"x": "/a/x"}}]
    assert real_robots(cfg, "b") == [{"id": "b"}]
    assert real_robots(cfg) == cfg["robots"]  # an explicit list, no robot_id: all of it
    with pytest.raises(FleetConfigError, match="not in the fleet file's robots"):
        real_robots(cfg, "c")


def test_real_mode_remappings_reach_the_one_actor():
    robots = real_robots({"robots": [{"id": "a", "remappings": {"x": "/a/x"}}]}, "a", {"y": "/ctrl/y"})
    fleet = expand_fleet({"mode": "real", "robots": robots})
    assert dict(fleet.by_name("a.actor").remappings) == {"x": "/a/x", "y": "/ctrl/y"}
    with pytest.raises(FleetConfigError, match="give robot_id"):
        real_robots({"robots": [{"id": "a"}, {"id": "b"}]}, "", {"y": "/ctrl/y"})


def test_bridge_enabled_makes_actors_stream_to_it():
    fleet = expand_fleet({"num_robots": 1, "bridge": {"enabled": True, "bind": "tcp://127.0.0.1:6000"}})
    actor = fleet.by_name("robot0.actor")
    assert actor.parameters["sink"] == "bridge"
    assert actor.parameters["bridge_endpoint"] == "tcp://127.0.0.1:6000"
    assert fleet.by_name("bridge").args[-1] == "tcp://127.0.0.1:6000"


def test_without_bridge_actors_record_locally():
    fleet = expand_fleet({"num_robots": 1, "bridge": {"enabled": False}})
    assert "sink" not in fleet.by_name("robot0.actor").parameters
    assert fleet.bridge_endpoint is None


def test_use_sim_time_reaches_every_node_and_adds_a_clock():
    fleet = expand_fleet({"num_robots": 2, "use_sim_time": True})
    ros_nodes = [p for p in fleet.processes if p.ros and p.name != "sim_clock"]
    assert all(p.parameters["use_sim_time"] is True for p in ros_nodes)
    assert fleet.by_name("sim_clock").module == "lwd_sim.sim_clock"


def test_command_line_carries_namespace_node_name_remaps_and_params_file():
    fleet = expand_fleet({"robots": [{"id": "r7", "remappings": {"joint_commands": "/ctrl/commands"}}]})
    argv = command_line(fleet.by_name("r7.actor"), "python", "/tmp/p.yaml")
    assert argv[:3] == ["python", "-m", "lwd_actor.actor_node"]
    tail = argv[argv.index("--ros-args") :]
    assert tail == [
        "--ros-args",
        "-r",
        "__node:=actor",
        "-r",
        "__ns:=/r7",
        "-r",
        "joint_commands:=/ctrl/commands",
        "--params-file",
        "/tmp/p.yaml",
    ]


def test_params_file_is_keyed_by_fully_qualified_node_name():
    spec = expand_fleet({"num_robots": 1}).by_name("robot0.sim_robot")
    content = ros_params_file_content(spec)
    assert list(content) == ["/robot0/sim_robot"]
    assert content["/robot0/sim_robot"]["ros__parameters"]["robot_id"] == "robot0"


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"num_robots": 0}, "positive"),
        ({"robots": [{"id": "a"}, {"id": "a"}]}, "twice"),
        ({"robots": [{"id": "bad id!"}]}, "must match"),
        ({"mode": "hybrid"}, "mode"),
    ],
)
def test_invalid_descriptions_are_refused_with_a_clear_message(cfg, match):
    with pytest.raises(FleetConfigError, match=match):
        expand_fleet(cfg)


def test_fleet_file_without_fleet_section_is_refused(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("robots: []\n")
    with pytest.raises(FleetConfigError, match="fleet"):
        load_fleet_yaml(path)


def test_set_overrides_parse_nested_yaml_values():
    assert parse_set(["actor_params.jpeg_quality=90", "use_sim_time=true"]) == {
        "actor_params": {"jpeg_quality": 90},
        "use_sim_time": True,
    }
