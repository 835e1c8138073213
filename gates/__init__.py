"""Measuring membership leakage and deciding a release (the privacy gate).

Imports no `prunectl` code: the core hands the gate the victim's pipeline as a function.
"""
