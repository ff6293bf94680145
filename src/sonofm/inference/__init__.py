"""Commands that read finished runs: evaluate, predict, embed, A-SAM evaluation."""
