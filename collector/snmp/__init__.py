"""SNMP collector: GETBULK poller (fast v2c codec, pysnmp for v3), sweeps, inventory mapping,
ARP history and observations for the rules engine. Entry point:
``collector.snmp.sweep.run_sweep`` (kept out of this module so the codec imports alone)."""
