"""Host side of roost: the `roost` CLI, the simulated board and the local cloud."""
