"""Training machinery shared by the entry points: run records (records), command-line pieces
(cli), the epoch loop and evaluation (loop), the learning-curve figure (plots)."""
