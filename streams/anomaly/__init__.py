"""Online anomaly detection for machine telemetry (river detectors, calibrated scores, events).

Entry points: :class:`~streams.anomaly.monitor.MachineMonitor` (one per machine),
:class:`~streams.anomaly.events.AnomalyEvent` (what it emits), and the commands in
:mod:`streams.anomaly.cli` (``millstream detect``, ``millstream nab score|run``).
"""
