"""Test fixtures for lwd: tiny ONNX policies, a fake robot, a topic probe, a teleop helper, a DDS smoke test."""
