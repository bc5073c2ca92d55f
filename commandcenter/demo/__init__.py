"""Demo data for the command center: an invented district of ~680,000 people (17 towns, ~241 villages
and communities, ~1,340 grids, 1,370 gridworkers) with a month of history, and a live simulator.

- ``geography.build_geography(seed, scale)``: the map, as plain data (pure, deterministic);
- ``loader.load_demo(seed, scale, force, progress)``: fills an empty database (``flask demo load``);
- ``simulator.run_simulator(app, speed, duration, stop_event)``: live events (``flask demo simulate``).

Every demo account's password is ``Demo@2026``; the loader refuses to run in server mode (see cli.py).
"""
