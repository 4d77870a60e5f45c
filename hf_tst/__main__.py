"""`python -m hf_tst COMMAND ...` (and `accelerate launch -m hf_tst COMMAND ...`): the `hf-tst` command."""

from .cli import main

main()
