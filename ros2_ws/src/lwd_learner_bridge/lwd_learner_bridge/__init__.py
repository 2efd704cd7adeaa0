"""Off-robot bridge: receives episode streams over ZeroMQ into a durable store and serves policy checkpoints to the fleet."""
