"""Workflows: whole jobs as plain functions a notebook can call, built from the layers below.

The CLI parses arguments, calls one of these and prints what it returns; nothing here prints.

- `profile`: a search space (or the ops of given networks) profiled on one device into the store;
- `predict`: F's answers for networks read from files (configs, ONNX, JSONL);
- `api`: one device's F as a Python object (`latkit.load_predictor`) for torch modules, ONNX
  models and op lists;
- `fleet`: several devices profiled at once, one worker process each, into one store;
- `search`: a hardware-aware search against a device's F, its result timed on the device;
- `quickstart`: profile, fit, validate and search on this CPU, end to end;
- `validate`: F against whole networks timed on the device;
- `networks`: whole networks timed beside the sum of their ops;
- `transfer`: a new device from a few whole networks and the other devices in the store;
- `discovery`: the Android phones reachable over USB, TCP or an adb server;
- `ofa`: F as once-for-all's efficiency predictor, for its evolutionary search;
- `defaults`: the search's defaults (those of `SearchConfig` come from `latkit.search.defaults`)
  and the command line's limits.
"""
