"""The benchmark harness: sweeps, runs, records, reports. Imports algorithms/, never the reverse."""
