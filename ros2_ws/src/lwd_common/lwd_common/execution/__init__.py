"""How a robot executes action chunks: the timestep-indexed timeline and its stitching
(`scheduler`), and when chunks are asked for and where they land (`chunk_execution`).

Shared by the actor's control loop and the simulator's held-out evaluation, so a success
figure is what a robot would do; below both packages, so neither depends on the other.
"""
