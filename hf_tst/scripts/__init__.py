"""The `hf-tst` commands, one module each: `make_parser(prog)` and `main(argv)`. The scripts in
`recipes/` run the same `main`s, so `hf-tst train ...` and `python recipes/train.py ...` are one job."""
