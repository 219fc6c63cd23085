"""Pieces shared by every method: the MLP builder, the replay buffer, the SAC core."""
