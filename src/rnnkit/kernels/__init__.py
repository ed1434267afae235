"""Fast paths. Each runs the same parameters as the cells and is tested equal to the reference loop."""
