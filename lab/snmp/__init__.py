"""Simulated SNMP agents for the collector's tests and benchmarks (see ../shared/LAB.md).

``snmprec``: router data as snmpsim files; ``routers``: routers from a lab inventory with
injected anomalies, and the benchmark router; ``agents``: snmpsim, net-snmp snmpd and the
misbehaving agents, each a process ended by its PID; ``lab``: a whole inventory served."""
