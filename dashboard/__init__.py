"""The live dashboard: a reference consumer of the enriched turns and alerts, in the browser."""
