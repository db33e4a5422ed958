"""Workflows: whole jobs as plain functions a notebook can call, built from the layers below.

The CLI parses arguments, calls one of these and prints what it returns; nothing here prints.

- `profile`: a search space profiled on one device into the store;
- `fleet`: several devices profiled at once, one worker process each, into one store;
- `search`: a hardware-aware search against a device's F, its result timed on the device;
- `quickstart`: profile, fit, validate and search on this CPU, end to end;
- `validate`: F against whole networks timed on the device;
- `networks`: whole networks timed beside the sum of their ops;
- `discovery`: the Android phones reachable over USB, TCP or an adb server;
- `defaults`: the search's defaults (those of `SearchConfig` come from `latkit.search.defaults`)
  and the command line's limits.
"""
