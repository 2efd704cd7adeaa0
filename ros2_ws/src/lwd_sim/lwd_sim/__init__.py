"""Simulated G1 dual-arm robot (MuJoCo): task suite, scripted expert and teleoperator, offline data generation, sim_robot node."""
