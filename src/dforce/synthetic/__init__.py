"""The synthetic experiments, one domain over the core: seeded generators (Van der Pol oscillators,
the paper's cross, a linear-Gaussian AR(1) process), training and sampling on them, the likelihood
evaluation (ELBO against the exact log-likelihood) and the cross experiment (memory vs stitching),
with their tables and figures."""
