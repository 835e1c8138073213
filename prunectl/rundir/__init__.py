"""The run directory `runs/<name>/`: its layout, its manifest, its checkpoints, and loading it back.

- `layout`: every file and directory name of a run, once;
- `directory`: creating, opening and resuming a run directory, and its per-round checkpoints;
- `manifest`: `manifest.json`, the typed record of what the run did (read, record, forget);
- `load`: a finished run's recipe, data, splits and models (`load_run`).

A run is *finished* when `manifest.json` exists; it is written last, so a killed run never looks
finished. Every file is written atomically (`prunectl.files`).
"""
