"""The minimal paper executor: trades promoted buckets with paper money, never signs an order."""
