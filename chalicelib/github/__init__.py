"""GitHub contributor metrics: one REST client, incremental streams, scheduled jobs and their queries."""
