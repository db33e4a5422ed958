"""Android over ADB: connect to a phone, run the stock benchmark_model on it, parse its output.

The emulated phone that tests and CI profile instead of real hardware is a tool of its own:
`latkit.emulator`."""
