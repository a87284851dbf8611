"""alignment-unidpo: Uni-DPO (Peng et al., ICLR 2026) and its DPO/SimPO baselines."""

__version__ = "0.1.0"
