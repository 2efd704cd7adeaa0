"""The robot as software sees it: joint and camera names, rates, limits (from the URDF), and the G1 kinematic tables that generate the URDF."""
