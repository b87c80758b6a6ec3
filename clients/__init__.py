"""The command line and the outputs: the run's lifetime (clients.live), the WebSocket stream and
control, VMC and VRChat OSC, the browser viewer and the recorder, all on the live path; the
offline subcommands (data, train, eval, bench) in clients.cli import the rest lazily."""
