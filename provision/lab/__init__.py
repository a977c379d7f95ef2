"""Lab rehearsal tools: simulated switch fleets with a NOS stand-in reachable over ssh (docs/rollout.md "Rehearsal")."""
