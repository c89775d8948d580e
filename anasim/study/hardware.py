"""Measurements on simulated hardware: training runs, Lipschitz bounds, relaxation
statistics and gradient alignment. They call the circuit, analysis and learning
packages only inside the measurement functions, so the sweep machinery imports
without them."""

from __future__ import annotations
