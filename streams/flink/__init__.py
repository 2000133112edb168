"""The PyFlink engine adapter: the same operator library as the Faust job, on Flink.

``job`` builds the graph, ``functions`` are the Python functions Flink runs, ``keyed`` is the
engine-free per-machine logic they call, ``kafka`` the connector glue, ``runner`` starts the job on a
local MiniCluster or in application mode. Importing this package does not import PyFlink.
"""
