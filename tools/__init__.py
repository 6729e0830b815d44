"""Development tools of the project (not installed with the package): the
demo model's data and trainer, its probe, the workflow generator and checker,
and the tiny SD checkpoint for the real-server test. Run them from the
repository root as modules, e.g. ``python -m tools.make_workflows``."""
