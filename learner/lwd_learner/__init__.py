"""JAX/Flax learner of lwd: DIVL value learning and QAM policy extraction (see shared METHOD.md)."""
