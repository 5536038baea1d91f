"""The 24-hour summary report, the evidence pack and the monthly statistics (issue 9)."""
