"""What a probe reads: the store through its handle (reader), the batches and test inputs drawn from it
(sampling), and the precision a run computes in (precision)."""
