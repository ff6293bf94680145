"""``sonofm sam``: A-SAM adaptation and the class prompter, their evaluation, automatic anatomy masks."""
