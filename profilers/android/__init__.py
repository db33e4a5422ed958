"""Android over ADB: connect to a phone, run the stock benchmark_model, parse it; plus the
emulated phone that tests and CI profile instead of real hardware."""
