"""mtbench: an experiment runner for multi-term loss balancing.

Reproduces the benchmarks of SoftAdapt (arXiv:1912.12355) and MTAdam
(arXiv:2006.14683). See README.md for the command line.
"""

__version__ = "0.1.0"
