"""Sources: where audit events come from (audit log files, cloud exports, stdin)."""
