"""Cases: intake, the six-step loop, deadlines, duplicates, and the center screens."""
