"""Time-stepped simulation of the cluster (paper, Sec. V), its experiments and plots."""
