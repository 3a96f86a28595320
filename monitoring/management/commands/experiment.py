"""``manage.py experiment promote ID`` (and start / evaluate / stop / rollback / status):
the same command as ``run_experiment``, under the name the runbooks use."""

from __future__ import annotations

from monitoring.management.commands.run_experiment import Command as RunExperiment


class Command(RunExperiment):
    pass
