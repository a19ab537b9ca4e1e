"""SLA policies, their timers and escalation (issue 17): due times per demand, kept by the monitor's tick."""
