"""MTP (multi-token prediction) drafters for real model families.

families.py  per-family names, block classes and checkpoint layouts
weights.py   reading only the MTP tensors out of safetensors files
sources.py   where the weights come from (built-in, sidecar, decoder repos) and pairing
loader.py    building and loading a head, shared by a target's requests
head.py      the MTP module (one class for every family) and what it borrows
drafter.py   MTPDrafter, the Drafter the verification loop drives
"""

from engine.drafters.mtp.drafter import MTPDrafter

__all__ = ["MTPDrafter"]
