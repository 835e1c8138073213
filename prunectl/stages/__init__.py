"""The stages of a run, one module each: prune, gate, export, memscore, release (compress), verify.

Each is a library function over a recipe or a run directory, importing the layers below it
(the run directory, the pipeline, the core) and never the facade `prunectl.api`, which
re-exports them.
"""
