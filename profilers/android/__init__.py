"""Android over ADB: connect to a phone, run the stock benchmark_model on it, parse its output.

The emulated phone that tests and CI profile instead of real hardware is a tool of its own:
`latkit.emulator`."""

#: what an emulated phone's rows and summaries are labelled with: it runs on this host's CPU
EMULATED_LABEL = "emulated phone: host-CPU numbers"
