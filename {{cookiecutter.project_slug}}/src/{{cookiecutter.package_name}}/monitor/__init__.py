"""After go-live: the `monitor` command and `eval harvest` read what production traffic left
(traffic/): drift against a reference, rates, operations, judged answers, golden-set drafts."""
