"""What production traffic leaves behind, written while the service runs: sampled
interactions (capture) and users' votes on answers (feedback). `monitor` and `eval harvest`
read them later; the composition root builds them, so they sit below it."""
