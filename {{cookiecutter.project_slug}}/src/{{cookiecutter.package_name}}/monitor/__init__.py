"""After go-live: what users say about answers (feedback) and, later, what traffic looks like."""
