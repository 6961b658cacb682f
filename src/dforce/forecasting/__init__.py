"""Probabilistic forecasting, one domain over the core: multivariate series and their loaders
(:mod:`.series`), forecast windows and tokens (:mod:`.windows`), the trained forecaster
(:mod:`.model`), baselines (:mod:`.baselines`), GluonTS scores (:mod:`.metrics`),
`dforce eval forecasting` and `dforce forecast` (:mod:`.evaluate`), the GluonTS
estimator/predictor (:mod:`.gluonts_api`) and the docs table (:mod:`.table`).

gluonts and pandas (the ``[timeseries]`` extra) are imported where they are used."""
